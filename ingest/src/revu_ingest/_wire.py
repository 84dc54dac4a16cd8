"""The wire contract, as pure functions: paths, body decoding, parsing and
per-envelope validation, reply bodies. No I/O here (the app reads the bytes,
the storage writes the rows), so the fault layer used by tests reuses the very
same rules instead of copying them.

Wire contract (docs/ingest.md has the full text):

    POST /v1/behavior/events   {"api_key": "...", "batch": [envelope, ...]}
      2xx {"ok": true, "accepted": [event_id, ...],
           "rejected": [{"event_id": ..., "code": ...}],
           "accept_encoding": ["gzip"]}
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

EVENTS_PATH = "/v1/behavior/events"
# Reserved: a generic mutation endpoint; it answers 501. The reference
# endpoint for the SDK's mutation outbox is CHAT_MESSAGES_PATH.
MUTATIONS_PATH = "/v1/mutations"
CHAT_MESSAGES_PATH = "/v1/chat/{room}/messages"
CHAT_MESSAGES_RE = re.compile(r"/v1/chat/([^/]*)/messages")
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,200}")

# Limits (named in docs/ingest.md).
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # wire bytes, and decoded bytes again after gzip
DEFAULT_MAX_BATCH_EVENTS = 2000
MAX_EVENT_ID_CHARS = 200
MAX_EVENT_NAME_CHARS = 1000
MAX_STREAM_CHARS = 1000
MAX_API_KEY_CHARS = 1000

ACCEPT_ENCODING = ["gzip"]
GZIP_MAGIC = b"\x1f\x8b"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Envelope rejection codes (per event, in a 2xx reply).
INVALID_ENVELOPE = "invalid_envelope"


class WireError(Exception):
    """A request-level failure: the whole request gets ``status`` and
    ``{"ok": false, "code", "error"[, "reason"]}``; nothing is stored."""

    def __init__(self, status: int, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "code": self.code, "error": self.message}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def too_large(limit: int, what: str = "body") -> WireError:
    return WireError(413, "too_large", f"{what} is larger than {limit} bytes")


# --------------------------------------------------------------------------
# Bodies


def content_encoding_of(header: str | None, body: bytes) -> str:
    """"gzip" or "identity" for a body, or raise 415 for anything else.

    Without a Content-Encoding header a body starting with the gzip magic bytes
    1f 8b is gzip: ``navigator.sendBeacon`` cannot set headers, and no JSON
    document starts with byte 0x1f.
    """
    value = (header or "").strip().lower()
    if value in ("", "identity"):
        return "gzip" if not value and body[:2] == GZIP_MAGIC else "identity"
    if value in ("gzip", "x-gzip"):
        return "gzip"
    raise WireError(415, "unsupported_encoding", f"Content-Encoding {header!r} is not supported; use gzip or none")


def decode_body(body: bytes, encoding_header: str | None, limit: int) -> tuple[bytes, str]:
    """The decoded body and the encoding used ("gzip" or "identity").

    Decoding stops as soon as the output passes ``limit`` bytes (a zip bomb
    costs at most ``limit`` bytes of memory) and raises 413.

    Raises:
        WireError: 415 for an unknown encoding, 400 ``bad_encoding`` for a
            corrupt or truncated gzip stream, 413 past the limit.
    """
    encoding = content_encoding_of(encoding_header, body)
    if encoding == "identity":
        return body, encoding
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            # 16 + MAX_WBITS: a gzip wrapper. Concatenated members are legal gzip.
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = data
            while chunk:
                piece = inflater.decompress(chunk, limit + 1 - size)
                size += len(piece)
                out.append(piece)
                if size > limit:
                    raise too_large(limit, "decoded body")
                chunk = inflater.unconsumed_tail
            if not inflater.eof:
                raise WireError(400, "bad_encoding", "gzip body is truncated", "truncated_gzip")
            data = inflater.unused_data
    except zlib.error as exc:
        raise WireError(400, "bad_encoding", f"gzip body is corrupt: {exc}", "corrupt_gzip") from None
    return b"".join(out), encoding


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; storing them would make stored envelopes unparseable.
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)


# The C scanner json.loads itself uses, with the same options: scan_once(text,
# i) -> (value, end) parses one JSON value starting at i.
_scan_once = json.JSONDecoder(parse_constant=_reject_constant).scan_once
_skip_ws = re.compile(r"[ \t\n\r]*").match
_WS_CHARS = " \t\n\r"


def _object_with_batch_texts(text: str) -> tuple[dict[str, Any], list[str] | None] | None:
    """``json.loads(text)`` for a body that is a JSON object, plus the source
    text of every element of its ``"batch"`` list (None when "batch" is not a
    list). The envelopes are then stored as sent, without encoding each one
    again: that encoding cost more than anything else in a request.

    The values are parsed by json's own scanner; only the punctuation of the
    top-level object and of the batch list is walked here. Returns None for
    anything else (not an object, invalid JSON): the caller then uses
    ``json.loads``, which gives the error.
    """
    scan, ws = _scan_once, _skip_ws
    i = ws(text, 0).end()
    if text[i:i + 1] != "{":
        return None
    obj: dict[str, Any] = {}
    texts: list[str] | None = None
    i = ws(text, i + 1).end()
    if text[i:i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i:i + 1] != '"':
                return None
            key, i = scan(text, i)
            i = ws(text, i).end()
            if text[i:i + 1] != ":":
                return None
            i = ws(text, i + 1).end()
            if key == "batch" and text[i:i + 1] == "[":
                items: list[Any] = []
                spans: list[str] = []
                i = ws(text, i + 1).end()
                if text[i:i + 1] == "]":
                    i += 1
                else:
                    while True:
                        start = i
                        value, i = scan(text, i)
                        items.append(value)
                        spans.append(text[start:i])
                        c = text[i:i + 1]
                        if c in _WS_CHARS:  # (also "" at the end: then ws() finds nothing)
                            i = ws(text, i).end()
                            c = text[i:i + 1]
                        if c == "]":
                            i += 1
                            break
                        if c != ",":
                            return None
                        i += 1
                        if text[i:i + 1] in _WS_CHARS:
                            i = ws(text, i).end()
                obj[key], texts = items, spans
            else:
                obj[key], i = scan(text, i)
                if key == "batch":
                    texts = None  # a later "batch" wins, as in json.loads
            i = ws(text, i).end()
            c = text[i:i + 1]
            if c == "}":
                i += 1
                break
            if c != ",":
                return None
            i = ws(text, i + 1).end()
    if ws(text, i).end() != len(text):
        return None
    return obj, texts


# One encoder, reused: json.dumps() with options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    return _encode(value)


def json_object(body: bytes) -> tuple[Any, str | None]:
    """The body as a JSON object, or why it is not one."""
    try:
        obj = loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"body is not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return obj, "body must be a JSON object"
    return obj, None


def clean_text(value: Any, max_chars: int) -> bool:
    """A non-empty string that a database text column can hold: no NUL, no
    lone surrogate (JSON allows both as escapes), at most ``max_chars``."""
    if not isinstance(value, str) or not value or len(value) > max_chars or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------
# POST /v1/behavior/events


@dataclass
class EventsBody:
    """A POST /v1/behavior/events body, parsed as far as it goes. ``error``
    is None when it is usable; ``reason`` is a stable machine code for it."""

    obj: Any = None
    error: str | None = None
    reason: str | None = None
    api_key: str | None = None
    batch: list[Any] = field(default_factory=list)
    # The source text of each element of ``batch`` as it appeared in the body,
    # when it was parsed that way (None otherwise).
    texts: list[str] | None = None

    @property
    def body_keys(self) -> list[str]:
        return sorted(self.obj) if isinstance(self.obj, dict) else []

    @property
    def event_ids(self) -> list[str]:
        return [env["event_id"] for env in self.batch if isinstance(env, dict) and isinstance(env.get("event_id"), str)]


def parse_events_body(body: bytes) -> EventsBody:
    out = EventsBody()
    fast = None
    try:
        fast = _object_with_batch_texts(body.decode("utf-8"))
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        pass
    if fast is not None:
        out.obj, out.texts = fast
    else:
        out.obj, out.error = json_object(body)
    if out.error is not None:
        out.reason = "invalid_json" if out.obj is None else "not_an_object"
        return out
    api_key = out.obj.get("api_key")
    if isinstance(api_key, str) and api_key:
        out.api_key = api_key
    batch = out.obj.get("batch")
    if isinstance(batch, list):
        out.batch = batch
    if "api_key" not in out.obj:
        out.error, out.reason = "api_key is missing", "missing_api_key"
    elif not isinstance(api_key, str):
        out.error, out.reason = "api_key must be a string", "invalid_api_key"
    elif not api_key:
        out.error, out.reason = "api_key is empty", "missing_api_key"
    elif not clean_text(api_key, MAX_API_KEY_CHARS):
        out.error, out.reason = f"api_key must be at most {MAX_API_KEY_CHARS} characters without NUL", "invalid_api_key"
    elif not isinstance(batch, list):
        out.error = "batch must be a list" if "batch" in out.obj else "batch is missing"
        out.reason = "invalid_batch" if "batch" in out.obj else "missing_batch"
    return out


def envelope_problem(env: Any) -> str | None:
    """Why an envelope cannot be stored, or None. Unknown fields are fine."""
    if not isinstance(env, dict):
        return "envelope is not an object"
    if not clean_text(env.get("event_id"), MAX_EVENT_ID_CHARS):
        return f"event_id must be a string of 1-{MAX_EVENT_ID_CHARS} characters without NUL"
    if not clean_text(env.get("event"), MAX_EVENT_NAME_CHARS):
        return f"event must be a string of 1-{MAX_EVENT_NAME_CHARS} characters without NUL"
    return None


def echo_id(env: Any) -> Any:
    """The event_id to report for a rejected envelope (JSON scalars only)."""
    if isinstance(env, dict):
        value = env.get("event_id")
        if value is None or isinstance(value, (str, int, float)):
            return value
    return None


class EventRow(NamedTuple):
    """One unique event of a batch, ready for storage. (A named tuple: a
    frozen dataclass cost 1 µs more per event to build.)"""

    event_id: str
    event: str
    stream: str | None
    created_at: int | None
    envelope: str  # the envelope as JSON text
    receipts: int  # how many times the batch holds it (1 unless repeated)


@dataclass
class CheckedBatch:
    accepted: list[str]
    rejected: list[dict[str, Any]]
    rows: list[EventRow]  # unique by event_id, first receipt wins, body order


def check_batch(
    batch: list[Any],
    reject_ids: frozenset[str] = frozenset(),
    reject_code: str = "",
    texts: list[str] | None = None,
) -> CheckedBatch:
    """Validate envelopes one by one: a bad envelope is rejected alone.

    ``accepted`` lists every good envelope's event_id in body order (a
    repeated id appears each time: it is acknowledged each time). ``rows``
    holds each event once, with ``receipts`` = how often the batch has it.
    ``reject_ids`` (used by the test fault layer) are rejected with
    ``reject_code`` and not stored. ``texts``, when given, is each
    envelope's source text (``EventsBody.texts``): it is stored as is,
    unless it holds a ``\\u`` escape, which is checked the slow way.
    """
    accepted: list[str] = []
    rejected: list[dict[str, Any]] = []
    first: dict[str, list[Any]] = {}
    for n, env in enumerate(batch):
        if envelope_problem(env) is not None:
            rejected.append({"event_id": echo_id(env), "code": INVALID_ENVELOPE})
            continue
        event_id = env["event_id"]
        if event_id in reject_ids:
            rejected.append({"event_id": event_id, "code": reject_code})
            continue
        seen = first.get(event_id)
        if seen is not None:
            seen[1] += 1
        elif texts is not None and "\\u" not in texts[n]:
            # The source text, as sent: valid JSON, no escape that could
            # hide a NUL or a lone surrogate.
            first[event_id] = [env, 1, texts[n]]
        else:
            try:
                text = _encode(env)
                if not text.isascii():
                    text.encode("utf-8")  # a lone surrogate deeper in the envelope
            except (UnicodeEncodeError, ValueError, RecursionError):
                rejected.append({"event_id": event_id, "code": INVALID_ENVELOPE})
                continue
            first[event_id] = [env, 1, text]
        accepted.append(event_id)
    rows = []
    for event_id, (env, receipts, text) in first.items():
        stream = env.get("stream")
        created_at = env.get("created_at")
        rows.append(
            EventRow(
                event_id=event_id,
                event=env["event"],
                stream=stream if clean_text(stream, MAX_STREAM_CHARS) else None,
                created_at=created_at if _is_int64(created_at) else None,
                envelope=text,
                receipts=receipts,
            )
        )
    return CheckedBatch(accepted, rejected, rows)


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def events_reply(accepted: list[str], rejected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ok": True, "accepted": accepted, "rejected": rejected, "accept_encoding": list(ACCEPT_ENCODING)}


def number_or_none(value: Any) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


# --------------------------------------------------------------------------
# POST /v1/chat/<room>/messages


@dataclass
class MessageBody:
    """A POST /v1/chat/<room>/messages body: ``{"text": str, ...any}``."""

    obj: Any = None
    error: str | None = None
    text: str | None = None

    @property
    def body_keys(self) -> list[str]:
        return sorted(self.obj) if isinstance(self.obj, dict) else []

    def fingerprint(self, room: str) -> str:
        """What a retry must repeat to be a replay: the room and ``text``
        (whatever its JSON value; absent or an unparsable body count as null)."""
        text = self.obj.get("text") if isinstance(self.obj, dict) else None
        return json.dumps([room, text], separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def parse_message_body(body: bytes) -> MessageBody:
    out = MessageBody()
    out.obj, out.error = json_object(body)
    if out.error is not None:
        return out
    text = out.obj.get("text")
    if not isinstance(text, str) or not text:
        out.error = "text must be a non-empty string"
    elif not clean_text(text, 1_000_000):
        out.error = "text must not contain NUL or lone surrogates"
    else:
        out.text = text
    return out


def room_of(path: str) -> str | None:
    """The room of a chat-messages path, "" if the path has that shape but
    the room is not valid, None for any other path."""
    match = CHAT_MESSAGES_RE.fullmatch(path)
    if match is None:
        return None
    room = match.group(1)
    return room if ROOM_RE.fullmatch(room) else ""


def idempotency_key(values: list[str]) -> str | None:
    """The request's Idempotency-Key if there is exactly one header and it is
    1-200 printable ASCII characters; else None."""
    if len(values) != 1 or not IDEMPOTENCY_KEY_RE.fullmatch(values[0]):
        return None
    return values[0]


MISSING_KEY_REPLY = {
    "ok": False,
    "code": "missing_idempotency_key",
    "error": "one Idempotency-Key header of 1-200 printable ASCII characters is required",
}
KEY_REUSED_REPLY = {
    "ok": False,
    "code": "idempotency_key_reused",
    "error": "this Idempotency-Key was first used with a different room or text",
}
