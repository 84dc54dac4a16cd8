"""Facts: what happened, reported by the shim to the core.

Every fact carries ``now_ms`` (the shim's clock); facts that may lead to a
random delay carry ``jitter`` in [0, 1). The core keeps no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fact:
    now_ms: int


@dataclass(frozen=True)
class Restored(Fact):
    """The shim loaded storage at start. Sent once, first.

    ``records`` are the raw stored values of queued records (``{"id", "raw"}``:
    the storage id and the stored string), in any order; ``dead_letters`` the
    same for the dead-letter list. Every one is untrusted: the core checks it
    (``_records.decode_record``) and answers ``Quarantine`` for what fails.
    ``durable`` is False when the shim runs on memory only.
    ``dropped_before_start`` counts, by reason, records the shim removed by
    published rules while the core was not running (``overflow``,
    ``consent``); ``quarantined_before_start`` counts, by reason, stored
    values the shim already moved aside at load by the same checks, and
    ``repaired_before_start`` those it repaired (lone surrogates).
    ``consent`` is the page's current consent state, or "unknown".
    ``in_flight_elsewhere`` maps event ids to the time (ms) until which a
    request another tab started may still be carrying them (a leader that
    closed or crashed): they are not sent before then. ``hidden`` is the
    page's visibility. The core answers with sends for what is queued and
    publishes its rules.
    """

    records: tuple[dict[str, Any], ...] = ()
    dead_letters: tuple[dict[str, Any], ...] = ()
    durable: bool = True
    online: bool = True
    dropped_before_start: dict[str, int] = field(default_factory=dict)
    quarantined_before_start: dict[str, int] = field(default_factory=dict)
    repaired_before_start: int = 0
    storage: str = "localStorage"
    consent: Any = "granted"
    in_flight_elsewhere: dict[str, int] = field(default_factory=dict)
    hidden: bool = False


@dataclass(frozen=True)
class Recorded(Fact):
    """The page recorded an event and the shim stored it (or kept it in memory).

    ``record`` is the stored value (``{"v", "seq", "env", ...}``), as the JSON
    string the shim wrote or as an object; ``durable`` says whether the write
    reached storage; ``held`` that the shim keeps it in memory until the
    consent state is known (not a storage failure). The core may answer with
    deletes (overflow, consent, duplicates), sends (size threshold), or a
    ``Quarantine`` when the value fails its checks.
    """

    record: Any = field(default_factory=dict)
    durable: bool = True
    held: bool = False


@dataclass(frozen=True)
class FlushRequested(Fact):
    """The page called ``revu.flush()``. The core answers ``SettleFlush`` later.

    ``event_ids``: only wait for these (a flush asked by another tab covers
    what that tab queued); None waits for everything queued now."""

    flush_id: str = ""
    event_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SendSucceeded(Fact):
    """A ``Send`` got a 2xx. ``reply`` is the reply body as text (the core
    parses it, bounded: it is untrusted), or an already parsed JSON value."""

    batch_id: str = ""
    status: int = 200
    reply: Any = None


@dataclass(frozen=True)
class SendFailed(Fact):
    """A ``Send`` failed: ``status`` is None for a network error or timeout.

    ``retry_after`` is the raw ``Retry-After`` header, if the shim could read it.
    """

    batch_id: str = ""
    status: int | None = None
    error: str = ""
    retry_after: str | None = None
    jitter: float = 0.0


@dataclass(frozen=True)
class TimerFired(Fact):
    """A ``SetTimer`` deadline passed. Stale keys are ignored by the core."""

    key: str = ""


@dataclass(frozen=True)
class WentOnline(Fact):
    """The browser fired ``online``: reset backoff and flush at once."""


@dataclass(frozen=True)
class VisibilityChanged(Fact):
    """The page became hidden (an unload may be near: keep requests within the
    keepalive budget) or visible again."""

    hidden: bool = False


@dataclass(frozen=True)
class NetworkChanged(Fact):
    """What the Network Information API says (where the browser has it):
    ``save_data`` (the user asked for less data) and ``effective_type``
    ("slow-2g", "2g", "3g", "4g", or None when unknown)."""

    save_data: bool = False
    effective_type: str | None = None


@dataclass(frozen=True)
class WentOffline(Fact):
    """The browser fired ``offline``: timers stop sending until ``online``."""


@dataclass(frozen=True)
class Beaconed(Fact):
    """The shim sent (``queued`` True) or failed to queue a terminal beacon.

    Beaconed events stay stored: a beacon's delivery is unknowable, so only a
    later ack removes them; the server dedupes the re-send.
    """

    event_ids: tuple[str, ...] = ()
    queued: bool = True
    # Until when (ms) the beacon may still be on its way: the core sends none
    # of ``event_ids`` before then (another request would carry a copy).
    until_ms: int = 0


@dataclass(frozen=True)
class SendSkipped(Fact):
    """The shim did not start a ``Send``: its events went out in a terminal
    beacon after the core decided the send (the decision and the beacon
    crossed). Not a failure: the batch returns to the queue."""

    batch_id: str = ""


@dataclass(frozen=True)
class ConsentChanged(Fact):
    """The page called ``revu.consent(state)``. The shim has already purged
    what the state no longer allows from storage (it must happen at once, even
    before the core runs); the core drops the same items from its queue, counts
    them and never sends them."""

    consent: Any = "granted"


@dataclass(frozen=True)
class DeadLetterRetried(Fact):
    """The page asked to retry a dead letter. The core requeues it and answers
    ``SettleFlush(flush_id)`` when it is acked (True) or fails for good again
    (False)."""

    event_id: str = ""
    flush_id: str = ""


@dataclass(frozen=True)
class DeadLetterDropped(Fact):
    """The page dropped a dead letter (for example after rolling back its UI)."""

    event_id: str = ""


@dataclass(frozen=True)
class StorageFailed(Fact):
    """A storage operation threw (quota, disabled storage). The shim keeps the
    data in memory; the core reports the SDK as not durable."""

    operation: str = ""
    error: str = ""


ALL_FACTS: tuple[type[Fact], ...] = (
    Restored, Recorded, FlushRequested, SendSucceeded, SendFailed, SendSkipped,
    TimerFired, WentOnline, WentOffline, Beaconed, StorageFailed,
    ConsentChanged, DeadLetterRetried, DeadLetterDropped, VisibilityChanged, NetworkChanged,
)


# What each field annotation admits. Facts come from the shim (JSON) or from a
# Python runtime; either way the core checks them before acting on them.
_ADMITS: dict[str, tuple[type, ...]] = {
    "int": (int,), "str": (str,), "bool": (bool,), "float": (int, float),
    "int | None": (int, type(None)), "str | None": (str, type(None)),
    "tuple[str, ...]": (tuple,), "tuple[dict[str, Any], ...]": (tuple,),
    "tuple[str, ...] | None": (tuple, type(None)),
    "dict[str, Any]": (dict,), "dict[str, int]": (dict,),
}
MAX_ID_CHARS = 200


def fact_problem(fact: Fact) -> str | None:
    """Why ``fact`` cannot be applied (a field of the wrong type or size), or
    None. Values the core reads deeper (records, replies, consent) are checked
    where they are used."""
    for name, annotation in type(fact).__dataclass_fields__.items():
        value = getattr(fact, name)
        admits = _ADMITS.get(str(annotation.type))
        if admits is None:
            continue
        if isinstance(value, bool) and bool not in admits:
            return f"{name} must be {annotation.type}, not a boolean"
        if not isinstance(value, admits):
            return f"{name} must be {annotation.type}, not {type(value).__name__}"
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
            return f"{name} is out of range"
        if isinstance(value, str) and len(value) > MAX_ID_CHARS and name not in ("error", "retry_after"):
            return f"{name} is longer than {MAX_ID_CHARS} characters"
        if isinstance(value, tuple) and annotation.type.startswith("tuple[str") and not all(isinstance(v, str) for v in value):
            return f"{name} must hold strings"
    return None
