"""Persisted schema: how a queued event and a dead letter look at rest.

The shim writes records itself (capture must be synchronous, see DESIGN.md), so
this module is the single description of the stored format; the shim mirrors
it in ``js_shim/capture.js`` and ``tests/fixtures`` pins each version.

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

_ENVELOPE_REQUIRED = ("event_id", "event", "properties", "created_at")
MUTATION_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CorruptRecord(ValueError):
    """A stored value that does not decode to a record of a known version."""


PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
NECESSARY = "necessary"
DEFAULT_CATEGORY = "analytics"


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
        size_bytes: UTF-8 length of the encoded envelope (or mutation), for byte budgets.
        meta: stored flags: ``category``, ``ttl_ms``, ``pii``.
        mutation: set for mutation-outbox entries.
    """

    event_id: str
    seq: int
    envelope: dict[str, Any]
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)
    mutation: Mutation | None = None

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
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.envelope.get("priority", "normal"), 1)

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
    """An event that failed for good, kept with why."""

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


def encode_envelope(envelope: dict[str, Any]) -> str:
    """Compact JSON, the same bytes the wire carries."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def make_record(event_id: str, seq: int, envelope: dict[str, Any],
                meta: dict[str, Any] | None = None, mutation: Mutation | None = None) -> Record:
    size = len(encode_envelope(envelope).encode("utf-8"))
    if mutation is not None:
        size += len(encode_envelope(mutation.to_json()).encode("utf-8"))
    return Record(event_id, seq, envelope, size, meta or {}, mutation)


def record_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "seq": record.seq, "env": record.envelope}
    if record.meta:
        out["meta"] = record.meta
    if record.mutation is not None:
        out["mutation"] = record.mutation.to_json()
    return out


def encode_record(record: Record) -> str:
    return json.dumps(record_json(record), separators=(",", ":"), ensure_ascii=False)


def decode_record(value: Any) -> Record:
    """Decode a stored queued record (a JSON string or an already parsed dict).

    Raises:
        CorruptRecord: when the value is not a version-1 record with a valid envelope.
    """
    data = _load(value)
    env = data.get("env")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise CorruptRecord("record has no integer seq")
    if not isinstance(env, dict):
        raise CorruptRecord("record has no envelope object")
    for field in _ENVELOPE_REQUIRED:
        if field not in env:
            raise CorruptRecord(f"envelope lacks {field!r}")
    if not isinstance(env["event_id"], str) or not env["event_id"]:
        raise CorruptRecord("envelope event_id is not a non-empty string")
    if not isinstance(env["event"], str) or not env["event"]:
        raise CorruptRecord("envelope event is not a non-empty string")
    if not isinstance(env["properties"], dict):
        raise CorruptRecord("envelope properties is not an object")
    if not isinstance(env["created_at"], int) or isinstance(env["created_at"], bool):
        raise CorruptRecord("envelope created_at is not an integer")
    if "stream" in env and (not isinstance(env["stream"], str) or not env["stream"]):
        raise CorruptRecord("envelope stream is not a non-empty string")
    if "priority" in env and env["priority"] not in PRIORITY_RANK:
        raise CorruptRecord("envelope priority is not high, normal or low")
    if "keys" in env and not (isinstance(env["keys"], dict) and all(isinstance(v, str) for v in env["keys"].values())):
        raise CorruptRecord("envelope keys is not an object of strings")
    if "sealed" in data:
        raise CorruptRecord("record is still sealed (the shim opens PII records before the core)")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise CorruptRecord("record meta is not an object")
    if "category" in meta and (not isinstance(meta["category"], str) or not meta["category"]):
        raise CorruptRecord("meta category is not a non-empty string")
    if "ttl_ms" in meta and (not isinstance(meta["ttl_ms"], int) or isinstance(meta["ttl_ms"], bool) or meta["ttl_ms"] < 1):
        raise CorruptRecord("meta ttl_ms is not a positive integer")
    return make_record(env["event_id"], seq, env, meta, _decode_mutation(data.get("mutation")))


def _decode_mutation(value: Any) -> Mutation | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptRecord("mutation is not an object")
    method, url, headers, key = (value.get(k) for k in ("method", "url", "headers", "idempotency_key"))
    if not isinstance(method, str) or method.upper() not in MUTATION_METHODS:
        raise CorruptRecord(f"mutation method must be one of {sorted(MUTATION_METHODS)}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise CorruptRecord("mutation url must be an absolute http(s) URL")
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise CorruptRecord("mutation headers must be an object of strings")
    if not isinstance(key, str) or not key:
        raise CorruptRecord("mutation idempotency_key must be a non-empty string")
    return Mutation(method.upper(), url, value.get("body"), headers, key)


def decode_dead_letter(value: Any) -> DeadLetter:
    """Decode a stored dead letter.

    Raises:
        CorruptRecord: when the value is not a version-1 dead letter.
    """
    data = _load(value)
    record = decode_record(data)
    reason = data.get("reason")
    if not isinstance(reason, str):
        raise CorruptRecord("dead letter has no reason")
    status = data.get("status")
    attempts = data.get("attempts", 0)
    at_ms = data.get("at_ms", 0)
    if status is not None and not isinstance(status, int):
        raise CorruptRecord("dead letter status is not an integer")
    if not isinstance(attempts, int) or not isinstance(at_ms, int):
        raise CorruptRecord("dead letter attempts/at_ms are not integers")
    return DeadLetter(record, reason, status, attempts, at_ms)


def _load(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise CorruptRecord(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptRecord("not a JSON object")
    version = value.get("v")
    if version != SCHEMA_VERSION:
        raise CorruptRecord(f"unknown schema version {version!r}")
    return value
