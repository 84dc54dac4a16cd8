"""States of the outbox and every transition between them.

Rules of this file:
  * Every change of ``Outbox`` state goes through ``transition``; a pair that
    is not in ``TRANSITIONS`` is a bug in the core and raises ``AssertionError``.
  * States describe the delivery pipe only. What is queued, acked or
    dead-lettered is data in ``Outbox``, not state here.

Theory of operation
-------------------
The shim stores every event itself the moment the page records it (capture
cannot wait for Python) and tells the core with ``Recorded``. The core keeps a
mirror of the queue and decides everything else: when to send, which records
form a batch, what a reply means, when to retry, what to drop and why.

At most one batch is in flight per tab. That keeps record order on the wire
(a retry re-sends the same head before anything newer) and keeps keepalive
bodies inside the browser's 64 KiB budget. A flush trigger (size, interval
timer, ``online``, ``revu.flush()``, start-up with a stored backlog) puts the
outbox in *draining* mode: it sends batch after batch until the queue is
empty or a send fails.

A transient failure (network error, timeout, 408, 429, 5xx) keeps the batch
queued and waits ``backoff`` (1 s doubling to 60 s, jittered, at least
``Retry-After``). A permanent failure (other 4xx) must not block the queue:
the core bisects the failed batch (halving the batch size for the suspects)
until the poison event travels alone, then moves it to the dead-letter list.
Good events from the same batch go through on the way.

::

                 Restored
    STARTING ─────────────► IDLE ◄──────────────────────────┐
                             │  ▲  ▲                          │
                   send next │  │  │ ack / permanent failure  │ retry timer,
                             ▼  │  │                          │ online,
                           SENDING ─────────────────────► BACKING_OFF
                                     transient failure       (revu.flush())
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    SENDING = "sending"
    BACKING_OFF = "backing_off"


class Trigger(enum.Enum):
    RESTORED = "restored"
    SEND = "send"
    ACK = "ack"
    TRANSIENT_FAILURE = "transient_failure"
    PERMANENT_FAILURE = "permanent_failure"
    RETRY_DUE = "retry_due"
    ONLINE = "online"
    MANUAL_FLUSH = "manual_flush"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.STARTING, Trigger.RESTORED): State.IDLE,
    (State.IDLE, Trigger.SEND): State.SENDING,
    (State.SENDING, Trigger.ACK): State.IDLE,
    (State.SENDING, Trigger.PERMANENT_FAILURE): State.IDLE,
    (State.SENDING, Trigger.TRANSIENT_FAILURE): State.BACKING_OFF,
    (State.BACKING_OFF, Trigger.RETRY_DUE): State.IDLE,
    (State.BACKING_OFF, Trigger.ONLINE): State.IDLE,
    (State.BACKING_OFF, Trigger.MANUAL_FLUSH): State.IDLE,
}


def transition(state: State, trigger: Trigger) -> State:
    """The state after ``trigger`` in ``state``.

    Raises:
        AssertionError: the pair is not a legal transition (a core bug).
    """
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise AssertionError(f"illegal transition {state.name} --{trigger.value}-->") from None
