"""Pure policy functions: backoff, failure classes, Retry-After, batching."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime

from ._records import Record

# Bytes of ``{"api_key":"","batch":[]}`` plus ``,"sent_at":<13 digits>`` per
# envelope are added to the envelope sizes to bound a request body.
_BODY_OVERHEAD_BYTES = 32
_SENT_AT_BYTES = len(',"sent_at":1700000000000')

_TRANSIENT_4XX = frozenset({408, 429})

JITTER_SPREAD = 0.2


def backoff_delay_ms(failures: int, jitter: float, base_ms: int, max_ms: int) -> int:
    """Delay before retry number ``failures`` (1 = first retry).

    Nominal delay is ``base_ms * 2**(failures-1)`` capped at ``max_ms``; jitter
    takes up to 20% off so that clients that failed together spread out while
    the cap still holds.

    >>> backoff_delay_ms(1, 0.0, 1000, 60000), backoff_delay_ms(7, 0.0, 1000, 60000)
    (1000, 60000)
    """
    if failures < 1:
        return 0
    nominal = min(max_ms, base_ms * (2 ** min(failures - 1, 32)))
    jitter = min(max(jitter, 0.0), 1.0)
    return int(round(nominal * (1.0 - JITTER_SPREAD * jitter)))


def is_transient(status: int | None) -> bool:
    """Network errors, timeouts, 408, 429, 5xx and anything that is not a 4xx
    are worth retrying; other 4xx mean the request itself is bad."""
    if status is None:
        return True
    return not (400 <= status < 500) or status in _TRANSIENT_4XX


def parse_retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """``Retry-After`` as delta-seconds or an HTTP-date, in ms from now.

    Returns None when absent or unparseable (the header is advice; a bad one
    must not stall the queue).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)


def envelope_cost_bytes(record: Record) -> int:
    return record.size_bytes + _SENT_AT_BYTES + 1  # + the comma between envelopes


def take_batch(records: Iterable[Record], max_count: int, max_bytes: int, api_key_bytes: int) -> list[Record]:
    """The longest prefix of ``records`` within ``max_count`` and ``max_bytes``.

    Always at least one record when any is given: a record larger than the
    budget (only possible if caps changed between loads) still goes out alone,
    without keepalive (see ``Outbox``), rather than blocking the queue.
    """
    batch: list[Record] = []
    used = _BODY_OVERHEAD_BYTES + api_key_bytes
    for record in records:
        cost = envelope_cost_bytes(record)
        if batch and (len(batch) >= max_count or used + cost > max_bytes):
            break
        batch.append(record)
        used += cost
        if len(batch) >= max_count:
            break
    return batch


def send_order(records: Iterable[Record]) -> list[Record]:
    """Records in the order they should be sent.

    Higher priority first (high > normal > low), then record order; but within
    a stream, record order always wins: an item is eligible only once every
    earlier item of its stream is ahead of it. Items without a stream are
    ordered by priority alone.
    """
    streams: dict[str, list[Record]] = {}
    heap: list[tuple[int, int, str | None, int]] = []
    loose: dict[int, Record] = {}
    for record in records:  # records arrive in seq order
        stream = record.stream
        if stream is None:
            loose[record.seq] = record
            heap.append((record.rank, record.seq, None, 0))
        else:
            streams.setdefault(stream, []).append(record)
    for stream, items in streams.items():
        heap.append((items[0].rank, items[0].seq, stream, 0))
    heapq.heapify(heap)
    out: list[Record] = []
    while heap:
        _rank, seq, stream, index = heapq.heappop(heap)
        if stream is None:
            out.append(loose[seq])
            continue
        items = streams[stream]
        out.append(items[index])
        if index + 1 < len(items):
            nxt = items[index + 1]
            heapq.heappush(heap, (nxt.rank, nxt.seq, stream, index + 1))
    return out


def eviction_order(records: Iterable[Record], coalescible: Callable[[Record], bool]) -> list[Record]:
    """Which records go first when a cap is hit: low-priority and coalescible
    events, then normal, then high; mutation-outbox entries last; oldest first
    within each class."""
    def klass(record: Record) -> int:
        if record.mutation is not None:
            return 3
        if record.rank == 2 or coalescible(record):
            return 0
        return 2 if record.rank == 0 else 1

    return sorted(records, key=lambda r: (klass(r), r.seq))
