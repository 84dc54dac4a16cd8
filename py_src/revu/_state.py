"""States of the outbox's delivery pipes and every transition between them.

Rules of this file:
  * Everything that changes what the core does next is state and lives here
    (h11's "Rule 1"): a lane's pipe state (including whether the events lane
    is *draining*), its backoff, the batch it has in flight, and the poison
    *isolation* in progress. ``Outbox`` changes them only through the methods
    below; a (state, trigger) pair that is not in ``TRANSITIONS`` is a bug in
    the core and raises ``AssertionError`` (the bridge contains it; see
    ``Outbox.handle_all``).
  * What is queued, acked or dead-lettered is data in ``Outbox``, not state here.
  * Whether the browser is online is an input (a fact about the world), kept
    by ``Outbox`` as data: it gates sending but is never a pipe state.

Theory of operation
-------------------
The shim stores every event itself the moment the page records it (capture
cannot wait for Python) and tells the core with ``Recorded``. The core keeps a
mirror of the queue and decides everything else: when to send, which records
form a batch, what a reply means, when to retry, what to drop and why.

Each *lane* is one delivery pipe with at most one request in flight: the
events lane (batches to the ingest endpoint) and one lane per mutation stream.
One request in flight keeps record order on the wire (a retry re-sends the
same head before anything newer) and keeps keepalive bodies inside the
browser's 64 KiB budget.

The events lane sends only while DRAINING. A flush trigger (size, interval
timer, ``online``, ``revu.flush()``, start-up with a stored backlog) moves an
IDLE lane to DRAINING; it then sends batch after batch (DRAINING -> SENDING ->
DRAINING) until the queue is empty (DRAINED -> IDLE). Mutation lanes send
their head whenever they are free (they never wait for a trigger).

A transient failure (network error, timeout, 408, 429, 5xx) keeps the batch
queued and waits ``backoff`` (1 s doubling to 60 s, jittered, at least
``Retry-After``) in BACKING_OFF. A permanent failure (other 4xx) must not block
the queue: the core *isolates* the poison (``Isolation``), halving the batch
size over the suspects until the poison event travels alone, then moves it to
the dead-letter list. Good events from the same batch go through on the way.

::

                   Restored
      STARTING ───────────────► IDLE ◄──────────── DRAINED (queue empty)
                                 │                      ▲
                  flush trigger  │                      │
                                 ▼       ack /          │
                              DRAINING ◄─ permanent ─── │ ──────────┐
                                 │        failure       │           │ retry due,
                           send  │  ┌───────────────────┘           │ online,
                                 ▼  │                               │ revu.flush()
                              SENDING ─────────────────────► BACKING_OFF
                                        transient failure

Mutation lanes use the same table without DRAINING: IDLE -> SENDING -> IDLE,
SENDING -> BACKING_OFF -> IDLE.

A send the shim did not start (``SendSkipped``: a terminal beacon carried its
events after the core decided it) goes SENDING -> DRAINING with no failure
counted; the beaconed events wait until the beacon can no longer be in flight.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    DRAINING = "draining"
    SENDING = "sending"
    BACKING_OFF = "backing_off"


class Trigger(enum.Enum):
    RESTORED = "restored"
    FLUSH = "flush"  # size threshold, interval timer, online, revu.flush(), a stored backlog
    DRAINED = "drained"  # nothing left to send
    SEND = "send"
    ACK = "ack"
    TRANSIENT_FAILURE = "transient_failure"
    PERMANENT_FAILURE = "permanent_failure"
    RETRY_DUE = "retry_due"
    ONLINE = "online"
    MANUAL_FLUSH = "manual_flush"
    RECOVER = "recover"  # the core contained an internal error; see Lane.recover
    SKIPPED = "skipped"  # the shim did not start the send (a beacon carried its events)


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.STARTING, Trigger.RESTORED): State.IDLE,
    (State.IDLE, Trigger.FLUSH): State.DRAINING,
    (State.DRAINING, Trigger.FLUSH): State.DRAINING,
    (State.DRAINING, Trigger.DRAINED): State.IDLE,
    (State.DRAINING, Trigger.SEND): State.SENDING,
    (State.SENDING, Trigger.ACK): State.DRAINING,
    (State.SENDING, Trigger.PERMANENT_FAILURE): State.DRAINING,
    (State.SENDING, Trigger.TRANSIENT_FAILURE): State.BACKING_OFF,
    (State.BACKING_OFF, Trigger.RETRY_DUE): State.DRAINING,
    (State.BACKING_OFF, Trigger.ONLINE): State.DRAINING,
    (State.BACKING_OFF, Trigger.MANUAL_FLUSH): State.DRAINING,
    # Mutation lanes: no DRAINING.
    (State.IDLE, Trigger.SEND): State.SENDING,
    (State.SENDING, Trigger.RECOVER): State.DRAINING,
    (State.SENDING, Trigger.SKIPPED): State.DRAINING,
}

# Mutation lanes map the events lane's "back to draining" to IDLE.
_MUTATION_LANE = {State.DRAINING: State.IDLE}


def transition(state: State, trigger: Trigger) -> State:
    """The state after ``trigger`` in ``state``.

    Raises:
        AssertionError: the pair is not a legal transition (a core bug).
    """
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise AssertionError(f"illegal transition {state.name} --{trigger.value}-->") from None


@dataclass(frozen=True)
class Batch:
    """A request in flight: its id, the items it carries and their kind."""

    batch_id: str
    event_ids: tuple[str, ...]
    kind: str  # "events" or "mutation"
    encoding: str | None = None


@dataclass
class Lane:
    """One delivery pipe: the events lane, or one mutation stream.

    Each lane has at most one request in flight and its own backoff, so a
    failing mutation stream blocks only itself.
    """

    name: str
    events: bool = False
    state: State = State.IDLE
    in_flight: Batch | None = None
    failures: int = 0
    backoff_ms: int = 0
    retry_at_ms: int | None = None

    @property
    def timer(self) -> str:
        return "retry" if self.events else f"retry:{self.name}"

    @property
    def free(self) -> bool:
        """Ready to send its next request (events: only while draining)."""
        return self.state is (State.DRAINING if self.events else State.IDLE)

    def fire(self, trigger: Trigger) -> None:
        """Apply a trigger (``transition``, with mutation lanes skipping DRAINING)."""
        state = transition(self.state, trigger)
        self.state = state if self.events else _MUTATION_LANE.get(state, state)

    def flush(self) -> None:
        """A flush trigger: an idle events lane starts draining."""
        if self.events and self.state in (State.IDLE, State.DRAINING):
            self.fire(Trigger.FLUSH)

    def drained(self) -> None:
        if self.events and self.state is State.DRAINING:
            self.fire(Trigger.DRAINED)

    def start(self, batch: Batch) -> None:
        self.fire(Trigger.SEND)
        self.in_flight = batch

    def finish(self, batch_id: str) -> Batch | None:
        """The outcome of ``batch_id`` arrived: the batch, if it was ours."""
        if self.in_flight is None or self.in_flight.batch_id != batch_id:
            return None
        batch, self.in_flight = self.in_flight, None
        return batch

    def acked(self) -> None:
        self.failures = 0
        self.backoff_ms = 0
        self.fire(Trigger.ACK)

    def refused(self) -> None:
        self.fire(Trigger.PERMANENT_FAILURE)

    def back_off(self, delay_ms: int, now_ms: int) -> None:
        self.failures += 1
        self.backoff_ms = delay_ms
        self.retry_at_ms = now_ms + delay_ms
        self.fire(Trigger.TRANSIENT_FAILURE)

    def resume(self, trigger: Trigger) -> None:
        """Leave BACKING_OFF: the retry is due, the browser is online, or the page flushed."""
        self.retry_at_ms = None
        if self.state is State.BACKING_OFF:
            self.fire(trigger)

    def reset_backoff(self) -> None:
        self.failures = 0
        self.backoff_ms = 0

    def recover(self) -> bool:
        """After an internal error the lane may claim a request that no longer
        exists (SENDING with nothing in flight): make it free again. Returns
        whether anything changed."""
        if self.state is State.SENDING and self.in_flight is None:
            self.fire(Trigger.RECOVER)
            return True
        return False


@dataclass
class Isolation:
    """Finding the poison in a batch the server refused as a whole.

    While ``suspects`` is not empty, batches are limited to ``limit`` events:
    half of the refused batch, then half again on each refusal, until the
    poison travels alone and is dead-lettered; then the remaining suspects are
    tried together again (and bisected again only if another poison is among
    them).
    """

    suspects: set[str] = field(default_factory=set)
    limit: int | None = None

    @property
    def active(self) -> bool:
        return self.limit is not None

    def batch_limit(self, max_batch: int) -> int:
        return max_batch if self.limit is None else min(max_batch, self.limit)

    def refused(self, event_ids: list[str]) -> None:
        """A batch of several events was refused: split it."""
        self.suspects.update(event_ids)
        self.limit = max(1, len(event_ids) // 2)

    def poison_found(self) -> None:
        """A lone item was refused (and dead-lettered): retry the rest together."""
        if self.suspects:
            self.limit = len(self.suspects)

    def forget(self, event_ids: list[str]) -> None:
        """Items left the queue (acked, dropped, dead-lettered)."""
        self.suspects.difference_update(event_ids)
        if not self.suspects:
            self.limit = None
