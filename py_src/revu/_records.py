"""Persisted schema: how a queued event and a dead letter look at rest.

The shim writes records itself (capture must be synchronous, see DESIGN.md), so
this module is the single description of the stored format; the shim mirrors
it in ``js_shim/capture.js`` and ``tests/fixtures`` pins each version.

Queued record, stored under ``<prefix>:q:<event_id>``::

    {"v": 1, "seq": 1732200000000123, "env": {envelope}}

Dead letter, stored under ``<prefix>:d:<event_id>``::

    {"v": 1, "seq": ..., "env": {envelope}, "reason": "http_422",
     "status": 422, "attempts": 3, "at_ms": 1732200000000}

``seq`` orders records: the shim makes it ``max(now_ms * 1000, last_seq + 1)``
so that it grows within a tab and across reloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1

_ENVELOPE_REQUIRED = ("event_id", "event", "properties", "created_at")


class CorruptRecord(ValueError):
    """A stored value that does not decode to a record of a known version."""


@dataclass(frozen=True)
class Record:
    """One queued event as the core sees it.

    Attributes:
        event_id: UUID made at record time; the idempotency key.
        seq: ordering key (record order within a tab and across reloads).
        envelope: the wire envelope without ``sent_at``.
        size_bytes: UTF-8 length of the encoded envelope, for byte budgets.
    """

    event_id: str
    seq: int
    envelope: dict[str, Any]
    size_bytes: int

    @property
    def stream(self) -> str | None:
        return self.envelope.get("stream")


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
            "v": SCHEMA_VERSION,
            "seq": self.record.seq,
            "env": self.record.envelope,
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "at_ms": self.at_ms,
        }


def encode_envelope(envelope: dict[str, Any]) -> str:
    """Compact JSON, the same bytes the wire carries."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def make_record(event_id: str, seq: int, envelope: dict[str, Any]) -> Record:
    return Record(event_id, seq, envelope, len(encode_envelope(envelope).encode("utf-8")))


def encode_record(record: Record) -> str:
    return json.dumps({"v": SCHEMA_VERSION, "seq": record.seq, "env": record.envelope},
                      separators=(",", ":"), ensure_ascii=False)


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
    return make_record(env["event_id"], seq, env)


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
