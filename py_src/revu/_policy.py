"""Pure policy functions: backoff, failure classes, Retry-After, batching,
request bodies, eviction order."""

from __future__ import annotations

import calendar
import heapq
import json
from collections.abc import Callable, Iterable
from email.utils import parsedate_tz

from ._records import Record

# A request body is ``{"api_key":<key>,"batch":[<env>,<env>]}`` where each
# <env> is a record's stored envelope text with ``,"sent_at":<ms>`` spliced in
# before its closing brace. ``js_shim/terminal.js`` builds the unload beacon
# the same way; tests/contract/body_cases.json pins the two byte for byte.
_SENT_AT = ',"sent_at":'

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
        parts = parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parts is None:
        return None
    # HTTP dates are always GMT (RFC 9110 section 5.6.7). parsedate_tz gives
    # no offset for "-0000" and the like; that is read as UTC here, never as
    # the host's time zone (email.utils.mktime_tz and a naive datetime's
    # .timestamp() would read it), so the same facts give the same delay in
    # Tokyo and in UTC. calendar.timegm is pure arithmetic on the fields.
    try:
        epoch_s = calendar.timegm(parts[:6]) - (parts[9] or 0)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0, epoch_s * 1000 - now_ms)


def body_prefix(api_key: str) -> str:
    return '{"api_key":' + json.dumps(api_key, ensure_ascii=False) + ',"batch":['


def envelope_cost_bytes(record: Record, now_ms: int) -> int:
    """Exact bytes a record adds to a body (with its comma)."""
    return record.size_bytes + len(_SENT_AT) + len(str(now_ms)) + 1


def batch_body(api_key: str, env_texts: Iterable[str], now_ms: int) -> str:
    """The request body for these envelopes, each sent with ``sent_at``."""
    stamp = f"{_SENT_AT}{now_ms}}}"
    return body_prefix(api_key) + ",".join(text[:-1] + stamp for text in env_texts) + "]}"


def take_batch(records: Iterable[Record], max_count: int, max_bytes: int, api_key: str, now_ms: int) -> list[Record]:
    """The longest prefix of ``records`` within ``max_count`` and ``max_bytes``
    (the exact UTF-8 size of the body ``batch_body`` makes).

    Always at least one record when any is given: a record larger than the
    budget (only possible if caps changed between loads) still goes out alone,
    without keepalive (see ``Outbox``), rather than blocking the queue.
    """
    batch: list[Record] = []
    used = len(body_prefix(api_key).encode("utf-8")) + len("]}") - 1  # the first record has no comma
    for record in records:
        cost = envelope_cost_bytes(record, now_ms)
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
    ordered by priority alone. Several tabs can give two records the same
    ``seq`` (each tab counts its own); they then keep the order they came in.
    """
    streams: dict[str, list[Record]] = {}
    heap: list[tuple[int, int, int, str | None, int]] = []
    loose: list[Record] = []
    position = 0
    for record in records:  # records arrive in seq order
        stream = record.stream
        if stream is None:
            heap.append((record.rank, record.seq, position, None, len(loose)))
            loose.append(record)
        else:
            streams.setdefault(stream, []).append(record)
        position += 1
    for stream, items in streams.items():
        heap.append((items[0].rank, items[0].seq, position, stream, 0))
        position += 1
    heapq.heapify(heap)
    out: list[Record] = []
    while heap:
        _rank, _seq, _pos, stream, index = heapq.heappop(heap)
        if stream is None:
            out.append(loose[index])
            continue
        items = streams[stream]
        out.append(items[index])
        if index + 1 < len(items):
            nxt = items[index + 1]
            heapq.heappush(heap, (nxt.rank, nxt.seq, position, stream, index + 1))
            position += 1
    return out


# Eviction classes under maxQueue / maxQueueBytes, first evicted first. Published
# to the shim (``Config.rules()["evictionRank"]``), which applies the same
# order before the core has loaded.
EVICTION_RANK = {"low": 0, "coalesced": 0, "normal": 1, "high": 2, "mutation": 3}


def eviction_class(record: Record, coalescible: bool) -> int:
    if record.mutation is not None:
        return EVICTION_RANK["mutation"]
    if coalescible:
        return EVICTION_RANK["coalesced"]
    return EVICTION_RANK[record.priority]


def eviction_order(records: Iterable[Record], coalescible: Callable[[Record], bool]) -> list[Record]:
    """Which records go first when a cap is hit: low-priority and coalescible
    events, then normal, then high; mutation-outbox entries last; oldest first
    within each class."""
    return sorted(records, key=lambda r: (eviction_class(r, coalescible(r)), r.seq))
