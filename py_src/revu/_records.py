"""Persisted schema: how a queued item and a dead letter look at rest, and the
checks every stored value passes before the core believes it.

Every value read from storage is untrusted input: another tab, an older or
newer SDK, an extension or a user with DevTools may have written it. This
module is the single description of the stored format; the shim writes records
itself (capture must be synchronous) and is pinned to these rules by the shared
cases in ``tests/contract/stored_cases.json`` (``js_shim/records.js`` runs the
same cases). ``tests/core/fixtures/`` pins each schema version.

Queued record, stored under ``<prefix>:q:<event_id>``::

    {"v": 1, "seq": 1732200000000123, "env": {envelope}}

Optional members of a queued record (absent means the default)::

    "meta": {"category": "analytics", "ttl_ms": 5000, "pii": true | ["email"]}
    "mutation": {"method": "POST", "url": "...", "body": ..., "headers": {...},
                 "idempotency_key": "..."}     # a mutation-outbox entry
    "sealed": {"alg": "A256GCM", "kid", "iv", "ct"}   # shim only, see below

``meta.category`` is the consent category (events default to "analytics";
mutations are "necessary" and need no consent). A record with ``meta.pii`` is
stored with its flagged properties removed from ``env`` and sealed with
AES-GCM in ``sealed`` (``js_shim/pii.js``); the shim opens it before the core
sees it, so the core only ever decodes clear records.

Dead letter, stored under ``<prefix>:d:<event_id>``::

    {"v": 1, "seq": ..., "env": {envelope}, "reason": "http_422",
     "status": 422, "attempts": 3, "at_ms": 1732200000000}

``seq`` orders records: the shim makes it ``max(now_ms * 1000, last_seq + 1)``
so that it grows within a tab and across reloads.

A stored value that fails a check is *quarantined* (moved aside under
``<prefix>:x:<storage id>``, counted by reason, reported, listed by
``revu.outbox.entries()``), never sent and never re-read as a record. The
reasons, in the order they are checked:

==================  =========================================================
``too_large``       over ``MAX_RECORD_BYTES`` (no record this SDK writes is)
``too_deep``        JSON nesting over ``MAX_RECORD_DEPTH``
``not_json``        not a JSON object
``unknown_version`` ``v`` missing or not a version this core can read/migrate
``unsafe_seq``      ``seq`` not an integer in [0, 2**53 - 1]
``key_mismatch``    stored under a key other than its ``event_id``
``invalid_record``  any other schema violation (envelope, meta, mutation)
==================  =========================================================

Lone UTF-16 surrogates (a string cut in the middle of an emoji, or an older SDK
that stored one) are not a reason: they are repaired, each replaced by U+FFFD
REPLACEMENT CHARACTER, the same rule capture applies to new events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

# Versions this core reads: the current one and every older one with a
# migration chain up to it (``MIGRATIONS[n]`` turns a version-n value into
# version n + 1). A version bump adds a migration, a fixture in
# tests/core/fixtures/ and a CHANGELOG line; it never deletes old records.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

MAX_SAFE_INTEGER = 2**53 - 1
# Capture refuses events over maxEventBytes (at most 60,000: the keepalive
# budget), options and metadata are bounded too, so no record this SDK writes
# comes near 64 KiB. A larger stored value was not written by revu.
MAX_RECORD_BYTES = 65_536
# Nesting of properties (and of a mutation body) allowed at capture; a record
# wraps them two levels deeper (record > env > properties).
MAX_DEPTH = 32
MAX_RECORD_DEPTH = MAX_DEPTH + 2
MAX_ID_BYTES = 128

REASONS = ("too_large", "too_deep", "not_json", "unknown_version", "unsafe_seq",
           "key_mismatch", "invalid_record")

PRIORITIES = ("high", "normal", "low")
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
NECESSARY = "necessary"
DEFAULT_CATEGORY = "analytics"
MUTATION_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_ENVELOPE_REQUIRED = ("event_id", "event", "properties", "created_at")
_RECORD_KEYS = frozenset({"v", "seq", "env", "meta", "mutation"})
_DEAD_LETTER_KEYS = _RECORD_KEYS | {"reason", "status", "attempts", "at_ms"}


class CorruptRecord(ValueError):
    """A stored value that is not a record this core can use.

    Attributes:
        reason: one of ``REASONS`` (how it is counted and reported).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Mutation:
    """A write for the mutation outbox: sent as its own request, once acked
    by the ack contract (``{"ok": true}``), with an ``Idempotency-Key``."""

    method: str
    url: str
    body: Any
    headers: dict[str, str]
    idempotency_key: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "body": self.body,
                "headers": self.headers, "idempotency_key": self.idempotency_key}


@dataclass(frozen=True)
class Record:
    """One queued item (an event or a mutation) as the core sees it.

    Attributes:
        event_id: UUID made at record time; the idempotency key.
        seq: ordering key (record order within a tab and across reloads).
        envelope: the wire envelope without ``sent_at``.
        env_json: the envelope's JSON text as stored; request bodies splice it
            in unchanged (``_policy.batch_body``), so what was stored is what
            is sent, byte for byte.
        size_bytes: UTF-8 length of ``env_json`` (plus the mutation), for byte budgets.
        meta: stored flags: ``category``, ``ttl_ms``, ``pii``.
        mutation: set for mutation-outbox entries.
    """

    event_id: str
    seq: int
    envelope: dict[str, Any]
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)
    mutation: Mutation | None = None
    env_json: str = ""

    @property
    def stream(self) -> str | None:
        return self.envelope.get("stream")

    @property
    def event(self) -> str:
        return self.envelope["event"]

    @property
    def created_at(self) -> int:
        return self.envelope["created_at"]

    @property
    def priority(self) -> str:
        return self.envelope.get("priority", "normal")

    @property
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.priority, 1)

    @property
    def category(self) -> str:
        if self.mutation is not None:
            return NECESSARY
        return self.meta.get("category", DEFAULT_CATEGORY)

    @property
    def keys(self) -> dict[str, str]:
        keys = self.envelope.get("keys")
        return keys if isinstance(keys, dict) else {}


@dataclass(frozen=True)
class DeadLetter:
    """An item that failed for good, kept with why."""

    record: Record
    reason: str
    status: int | None
    attempts: int
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            **record_json(self.record),
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "at_ms": self.at_ms,
        }


def encode_json(value: Any) -> str:
    """Compact JSON, as the shim writes it (``JSON.stringify``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


encode_envelope = encode_json


def make_record(event_id: str, seq: int, envelope: dict[str, Any],
                meta: dict[str, Any] | None = None, mutation: Mutation | None = None,
                env_json: str | None = None) -> Record:
    env_json = encode_json(envelope) if env_json is None else env_json
    size = len(env_json.encode("utf-8"))
    if mutation is not None:
        size += len(encode_json(mutation.to_json()).encode("utf-8"))
    return Record(event_id, seq, envelope, size, meta or {}, mutation, env_json)


def record_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "seq": record.seq, "env": record.envelope}
    if record.meta:
        out["meta"] = record.meta
    if record.mutation is not None:
        out["mutation"] = record.mutation.to_json()
    return out


def encode_record(record: Record) -> str:
    return encode_json(record_json(record))


# -- reading untrusted text -----------------------------------------------------

_SPECIAL = re.compile(r'[\[\]{}"\\]')
# A JSON \u escape of a surrogate, with the backslashes before it (an even run
# of them means the escape is real, an odd one that its backslash is escaped).
_SURROGATE_ESCAPE = re.compile(
    r"(\\*)\\u([dD][89abAB][0-9a-fA-F]{2})(?:\\u([dD][c-fC-F][0-9a-fA-F]{2}))?|(\\*)\\u([dD][c-fC-F][0-9a-fA-F]{2})")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text nests containers deeper than ``limit``.

    Checked before parsing: a parser recursing through 10,000 levels overflows
    the stack (in Pyodide, the WebAssembly stack, which no ``except`` catches).
    Linear, and nearly free for ordinary values (few brackets: no scan). The
    shim's ``jsonDepthExceeds`` scans the same way.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    skip = -1
    for match in _SPECIAL.finditer(text):
        pos = match.start()
        if pos < skip:
            continue  # the character after a backslash in a string
        ch = match.group()
        if in_string:
            if ch == "\\":
                skip = pos + 2
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def repair_surrogates(text: str) -> tuple[str, bool]:
    """Replace every lone UTF-16 surrogate in JSON text by U+FFFD.

    Handles both forms: a surrogate code point in the text itself, and a
    ``\\uD800``-style escape without its pair (what ``JSON.stringify`` writes
    for a lone surrogate). Escaped pairs are left alone.

    Returns:
        The repaired text, and whether anything changed.
    """
    repaired = False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Pairs that arrive as two code points are joined, lone ones replaced.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        repaired = True
    if "\\u" in text or "\\U" in text:
        def fix(match: re.Match[str]) -> str:
            nonlocal repaired
            if match.group(2) is not None:  # a high surrogate escape
                slashes, high, low = match.group(1), match.group(2), match.group(3)
                if len(slashes) % 2:
                    return match.group(0)  # "\\u..." is an escaped backslash, then text
                if low is not None:
                    return match.group(0)  # a proper pair
                repaired = True
                return slashes + "\\ufffd"
            slashes = match.group(4)
            if len(slashes) % 2:
                return match.group(0)
            repaired = True
            return slashes + "\\ufffd"
        text = _SURROGATE_ESCAPE.sub(fix, text)
    return text, repaired


def parse_json(text: str, max_depth: int, max_bytes: int | None = None) -> Any:
    """``json.loads`` for untrusted text: bounded size and depth, no exceptions
    other than ``CorruptRecord``."""
    if max_bytes is not None and (len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes):
        raise CorruptRecord("too_large", f"{len(text.encode('utf-8', 'surrogatepass'))} bytes, over {max_bytes}")
    if json_depth_exceeds(text, max_depth):
        raise CorruptRecord("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord("not_json", f"not JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON: a body holding
    # them would be refused by the server.
    raise ValueError(f"{name} is not JSON")


_HEAD = re.compile(r'\{"v":(\d{1,16}),"seq":(-?\d{1,20}),"env":')
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity (ValueError)."""
    return _DECODER.decode(text)


def _load(value: Any) -> tuple[dict[str, Any], str | None]:
    """Parse a stored value: the object, and the envelope's JSON text when the
    value has the layout the shim writes (``{"v","seq","env",...}``)."""
    if isinstance(value, dict):
        try:
            value = encode_json(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise CorruptRecord("not_json", f"not a JSON value: {exc}") from None
    if not isinstance(value, str):
        raise CorruptRecord("not_json", f"a stored value must be a string, not {type(value).__name__}")
    if len(value) > MAX_RECORD_BYTES or len(value.encode("utf-8", "surrogatepass")) > MAX_RECORD_BYTES:
        raise CorruptRecord("too_large", f"{len(value.encode('utf-8', 'surrogatepass'))} bytes, "
                                         f"over the {MAX_RECORD_BYTES} any record can be")
    if json_depth_exceeds(value, MAX_RECORD_DEPTH):
        raise CorruptRecord("too_deep", f"nested deeper than {MAX_RECORD_DEPTH} levels")
    text, _ = repair_surrogates(value)
    head = _HEAD.match(text)
    if head is not None:
        # One parse: the envelope from its position, then the rest.
        try:
            env, end = _DECODER.raw_decode(text, head.end())
            rest = text[end:]
            if rest == "}":
                data: dict[str, Any] = {}
            elif rest.startswith(",") and rest.endswith("}"):
                data = loads("{" + rest[1:])
            else:
                raise ValueError("unexpected text after the envelope")
            if isinstance(env, dict) and isinstance(data, dict) and not ({"v", "seq", "env"} & set(data)):
                data = {"v": int(head.group(1)), "seq": int(head.group(2)), "env": env, **data}
                return data, text[head.end():end]
        except (ValueError, RecursionError):
            pass  # not the usual layout: parse it whole below
    try:
        data = loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord("not_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CorruptRecord("not_json", "not a JSON object")
    return data, None


def _int_like(value: Any) -> Any:
    """JSON has one number type: ``1.0`` and ``1e3`` are integers to the
    shim's JSON.parse, so they are here too."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**63:
        return int(value)
    return value


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    for name in ("v", "seq", "status", "attempts", "at_ms"):
        if name in data:
            data[name] = _int_like(data[name])
    env = data.get("env")
    if isinstance(env, dict) and "created_at" in env:
        data["env"] = {**env, "created_at": _int_like(env["created_at"])}
    meta = data.get("meta")
    if isinstance(meta, dict) and "ttl_ms" in meta:
        data["meta"] = {**meta, "ttl_ms": _int_like(meta["ttl_ms"])}
    return data


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    data = _normalise(data)
    version = data.get("v")
    if not _is_int(version) or not (version == SCHEMA_VERSION or version in MIGRATIONS):
        raise CorruptRecord("unknown_version", f"unknown schema version {version!r} "
                                               f"(this core reads {_known_versions()})")
    while data["v"] != SCHEMA_VERSION:
        step = MIGRATIONS.get(data["v"])
        if step is None:
            raise CorruptRecord("unknown_version", f"no migration from version {data['v']!r}")
        data = step(data)
    return data


def _known_versions() -> list[int]:
    return sorted({SCHEMA_VERSION, *MIGRATIONS})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _safe_int(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_SAFE_INTEGER


def decode_record(value: Any, key: str | None = None) -> Record:
    """Decode a stored queued record (its JSON text, or an already parsed dict).

    Args:
        value: the stored value.
        key: the storage id it was found under; must equal its ``event_id``.

    Raises:
        CorruptRecord: with the quarantine ``reason`` (see the module docstring).
    """
    data, env_text = _load(value)
    return _decode(data, env_text, key, _RECORD_KEYS)


def _decode(data: dict[str, Any], env_text: str | None, key: str | None, allowed: frozenset[str]) -> Record:
    data = _migrate(data)
    if not _safe_int(data.get("seq")):
        raise CorruptRecord("unsafe_seq", f"seq {data.get('seq')!r} is not an integer in [0, 2**53 - 1]")
    env = data.get("env")
    if not isinstance(env, dict):
        raise CorruptRecord("invalid_record", "record has no envelope object")
    event_id = env.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise CorruptRecord("invalid_record", f"envelope event_id must be a string of 1 to {MAX_ID_BYTES} bytes")
    if key is not None and key != event_id:
        raise CorruptRecord("key_mismatch", f"stored under {key[:80]!r} but its event_id is {event_id!r}")
    unknown = set(data) - allowed
    if unknown:
        raise CorruptRecord("invalid_record", f"unknown members {sorted(unknown)[:5]}"
                            + (" (still sealed: the shim opens PII records before the core)" if "sealed" in unknown else ""))
    _check_envelope(env)
    meta = data.get("meta", {})
    _check_meta(meta)
    mutation = _decode_mutation(data.get("mutation"))
    return make_record(event_id, data["seq"], env, meta, mutation,
                       env_json=env_text if env_text is not None else encode_json(env))


def _check_envelope(env: dict[str, Any]) -> None:
    for name in _ENVELOPE_REQUIRED:
        if name not in env:
            raise CorruptRecord("invalid_record", f"envelope lacks {name!r}")
    if not isinstance(env["event"], str) or not env["event"]:
        raise CorruptRecord("invalid_record", "envelope event is not a non-empty string")
    if not isinstance(env["properties"], dict):
        raise CorruptRecord("invalid_record", "envelope properties is not an object")
    if not _safe_int(env["created_at"]):
        raise CorruptRecord("invalid_record", "envelope created_at is not an integer in [0, 2**53 - 1]")
    if "stream" in env and (not isinstance(env["stream"], str) or not env["stream"]):
        raise CorruptRecord("invalid_record", "envelope stream is not a non-empty string")
    if "priority" in env and env["priority"] not in PRIORITY_RANK:
        raise CorruptRecord("invalid_record", "envelope priority is not high, normal or low")
    if "keys" in env and not (isinstance(env["keys"], dict) and all(isinstance(v, str) for v in env["keys"].values())):
        raise CorruptRecord("invalid_record", "envelope keys is not an object of strings")


def _check_meta(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise CorruptRecord("invalid_record", "record meta is not an object")
    if "category" in meta and (not isinstance(meta["category"], str) or not meta["category"]):
        raise CorruptRecord("invalid_record", "meta category is not a non-empty string")
    if "ttl_ms" in meta and (not _safe_int(meta["ttl_ms"]) or meta["ttl_ms"] < 1):
        raise CorruptRecord("invalid_record", "meta ttl_ms is not a positive integer")
    pii = meta.get("pii", False)
    if not (isinstance(pii, bool) or (isinstance(pii, list) and all(isinstance(p, str) for p in pii))):
        raise CorruptRecord("invalid_record", "meta pii is not true or a list of names")


def _decode_mutation(value: Any) -> Mutation | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptRecord("invalid_record", "mutation is not an object")
    method, url, headers, key = (value.get(k) for k in ("method", "url", "headers", "idempotency_key"))
    if not isinstance(method, str) or method.upper() not in MUTATION_METHODS:
        raise CorruptRecord("invalid_record", f"mutation method must be one of {sorted(MUTATION_METHODS)}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise CorruptRecord("invalid_record", "mutation url must be an absolute http(s) URL")
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise CorruptRecord("invalid_record", "mutation headers must be an object of strings")
    if not isinstance(key, str) or not key:
        raise CorruptRecord("invalid_record", "mutation idempotency_key must be a non-empty string")
    return Mutation(method.upper(), url, value.get("body"), headers, key)


def decode_dead_letter(value: Any, key: str | None = None) -> DeadLetter:
    """Decode a stored dead letter.

    Raises:
        CorruptRecord: with the quarantine ``reason``.
    """
    data, env_text = _load(value)
    record = _decode(data, env_text, key, _DEAD_LETTER_KEYS)
    data = _normalise(data)
    reason = data.get("reason")
    if not isinstance(reason, str):
        raise CorruptRecord("invalid_record", "dead letter has no reason")
    status = data.get("status")
    attempts = data.get("attempts", 0)
    at_ms = data.get("at_ms", 0)
    if status is not None and not _is_int(status):
        raise CorruptRecord("invalid_record", "dead letter status is not an integer")
    if not _safe_int(attempts) or not _safe_int(at_ms):
        raise CorruptRecord("invalid_record", "dead letter attempts/at_ms are not integers")
    return DeadLetter(record, reason, status, attempts, at_ms)


def event_id_of(value: Any) -> str | None:
    """The event_id of a value that did not decode, if one can be read
    cheaply and safely, so that its stored copy can still be found."""
    if isinstance(value, str):
        if len(value) > MAX_RECORD_BYTES or json_depth_exceeds(value, MAX_RECORD_DEPTH):
            return None
        try:
            value = loads(value)
        except (ValueError, RecursionError):
            return None
    env = value.get("env") if isinstance(value, dict) else None
    event_id = env.get("event_id") if isinstance(env, dict) else None
    return event_id if isinstance(event_id, str) and 0 < len(event_id.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES else None
