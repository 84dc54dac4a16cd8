"""Commands: what the core asks the shim to do.

Running a command twice is harmless: deletes and stores are keyed by event_id,
sends carry event ids the server dedupes on, timers are keyed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class Send(Command):
    """Make the request: ``method`` ``url`` with ``body`` and ``headers``
    (events: POST, ``Content-Type: application/json``), with ``keepalive`` and
    an abort after ``timeout_ms``. With ``encoding`` "gzip", compress the body
    (off the main thread) and send it with ``Content-Encoding: gzip``; the
    body's UTF-8 size is within the keepalive budget whenever ``keepalive`` is
    set, so the compressed one is too. Report ``SendSucceeded`` for any 2xx
    (with the reply's text), ``SendFailed`` otherwise. ``kind`` is "events" (a
    batch) or "mutation" (one mutation-outbox entry)."""

    batch_id: str
    url: str
    body: str
    event_ids: tuple[str, ...]
    keepalive: bool = True
    timeout_ms: int = 10_000
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    kind: str = "events"
    encoding: str | None = None


@dataclass(frozen=True)
class Delete(Command):
    """Remove these queued records from storage and from the shim's mirror."""

    event_ids: tuple[str, ...]
    reason: str = "acked"


@dataclass(frozen=True)
class StoreDeadLetters(Command):
    """Write each entry under the dead-letter key and delete its queued record."""

    entries: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Requeue(Command):
    """Write each record back to the queue and delete its dead letter."""

    records: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class DeleteDeadLetters(Command):
    """Remove these dead letters from storage."""

    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Quarantine(Command):
    """Move these stored values aside: each entry is ``{"id", "area", "reason"}``
    (``area`` "queue" or "dead": where the value is stored under ``id``). The
    shim writes the value, with the reason, under the quarantine key (bounded;
    see README "What revu does with bad input"), deletes the original and
    forgets it: it is never sent or read as a record again."""

    entries: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Halt(Command):
    """The core cannot go on (repeated internal errors). The shim stops
    calling it, reports ``core_unavailable``, settles pending flushes false and
    keeps capturing and beaconing by the published rules."""

    reason: str


@dataclass(frozen=True)
class SetTimer(Command):
    """Fire ``TimerFired(key)`` at ``at_ms``, replacing any timer with this key."""

    key: str
    at_ms: int


@dataclass(frozen=True)
class CancelTimer(Command):
    key: str


@dataclass(frozen=True)
class SettleFlush(Command):
    """Resolve the ``revu.flush()`` promise ``flush_id`` with ``ok``."""

    flush_id: str
    ok: bool


@dataclass(frozen=True)
class Emit(Command):
    """Call the page's ``revu.on(name)`` listeners with ``detail``."""

    name: str
    detail: Any = None


@dataclass(frozen=True)
class ReportStatus(Command):
    """Replace the snapshot ``revu.status()`` returns."""

    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishRules(Command):
    """Store the rules the shim applies while the core cannot answer."""

    rules: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Log(Command):
    """A debug log line (printed by the shim when ``debug: true``)."""

    level: str
    message: str
