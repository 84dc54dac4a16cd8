"""The storage interface: everything the service asks of a database.

Two implementations share it (SQLite and PostgreSQL) and the same tests run
against both. Every method is async: the PostgreSQL one awaits the network,
the SQLite one runs its calls on one worker thread per process.

Correctness lives in the database, never in the process:

- ``events.event_id`` is unique. A batch is written in one statement (one
  transaction) with ``INSERT ... ON CONFLICT (event_id) DO UPDATE SET
  receipts = receipts + excluded.receipts``. Two processes that insert the same
  event at the same moment serialise on that key: one inserts, the other
  waits for its commit and then counts a receipt. So ``SUM(receipts)`` is
  exactly the number of envelopes that reached the store and
  ``SUM(receipts) - COUNT(*)`` exactly the duplicates received before dedupe,
  whatever the number of processes.
- A method returns only after its commit: the caller acknowledges nothing
  that is not committed.
- The mutation check-and-apply claims the Idempotency-Key with a unique key
  (PostgreSQL) or the database write lock (SQLite) inside one transaction.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .._wire import EventRow


class StorageError(Exception):
    """The database is unreachable, busy past its timeout, or failed a
    statement for a reason that may pass: the request is answered 503."""


@dataclass(frozen=True)
class StoreResult:
    """What one batch did to the store."""

    stored: int  # new events
    duplicates: int  # envelopes of the batch that were already stored (or repeated in it)


@dataclass(frozen=True)
class MutationResult:
    """What one mutation request did.

    ``effect``: "applied" (message appended), "replayed" (the key is known:
    the remembered reply), "recorded" (invalid body: the 422 is remembered),
    "rejected" (the key was first used with another room or text: 409).
    """

    status: int
    reply: dict[str, Any]
    effect: str
    message_id: int | None


@dataclass(frozen=True)
class Totals:
    unique: int  # events stored
    received_total: int  # envelopes that reached the store, new or duplicate
    mutation_replays: int
    messages: int

    @property
    def duplicates(self) -> int:
        return self.received_total - self.unique


class Storage(abc.ABC):
    """One database, shared by any number of processes."""

    backend: str  # "sqlite" or "postgresql"
    url: str  # as given, for logs (passwords are masked by describe())

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema (safe when several processes
        start at once). Raises StorageError when the database cannot be used."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageError unless a round trip to the database works."""

    @abc.abstractmethod
    async def store_events(
        self, api_key: str, rows: Sequence[EventRow], received_at_ms: int, request_seq: int | None = None
    ) -> StoreResult:
        """Insert new events and count receipts of known ones, atomically.
        Returns after the commit."""

    @abc.abstractmethod
    async def apply_message(
        self,
        key: str,
        fingerprint: str,
        room: str,
        text: str | None,
        error: str | None,
        now_ms: int,
        request_seq: int | None = None,
    ) -> MutationResult:
        """Check-and-apply one chat message for ``key``, once per key across
        every process. ``error`` is set (and ``text`` None) for an invalid
        body: the 422 reply is remembered for the key."""

    # -- inspection and test support (the harness, the tests, the benchmark) --

    @abc.abstractmethod
    async def totals(self) -> Totals: ...

    @abc.abstractmethod
    async def events(self, tail: int | None = None) -> list[dict[str, Any]]:
        """Stored events in first-receipt order (the last ``tail`` only if given):
        {event_id, api_key, event, stream, received_at_ms, request_seq,
        receipts, envelope (parsed)}."""

    @abc.abstractmethod
    async def messages(self, tail: int | None = None) -> list[dict[str, Any]]:
        """Chat messages by message_id: {message_id, room, text,
        idempotency_key, at_ms, seq_in_room, request_seq}."""

    @abc.abstractmethod
    async def next_request_seq(self) -> int:
        """A request number from a database sequence (1, 2, 3 ..., across
        processes and restarts). The test harness numbers requests with it;
        the service does not call it."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Delete every event, message and key; restart the numbering."""

    def describe(self) -> str:
        return self.url


SCHEMA_VERSION = 1


def replayed(status: int, reply_text: str, message_id: int | None) -> MutationResult:
    """The remembered reply of a known key, marked as a replay."""
    reply = json.loads(reply_text)
    if reply.get("ok") is True:
        reply["replayed"] = True
    return MutationResult(status, reply, "replayed", message_id)
