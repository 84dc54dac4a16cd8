"""Group commit: the event batches of concurrent requests in one process are
written together, in one statement and one transaction.

Under load most of a request's database cost is per statement and per
commit (a round trip, a WAL flush, an fsync), not per row, so one write for
the batches of eight waiting requests costs little more than one for a
single batch. Nothing waits on purpose: a batch is written at once when
fewer than ``max_in_flight`` writes are running; otherwise it joins the next
write, which starts as soon as one finishes ("natural batching").

Every request still gets its reply only after the commit that holds its
events, and its own ``StoreResult``. An event that two waiting requests
carry is written once with both receipts; the first of them (in arrival
order) is told it stored the event, the other that it was a duplicate, so
the sums over requests are what the database counts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, NamedTuple, Sequence

from .._wire import EventRow
from ._base import StoreResult


class GroupRow(NamedTuple):
    """One event of a group write: unique by ``event_id`` in the group."""

    row: EventRow
    receipts: int  # over every batch of the group that holds it
    api_key: str  # of the first batch that holds it
    received_at_ms: int
    request_seq: int | None


# write_rows(rows) -> {event_id: receipts stored after the write}, committed.
WriteRows = Callable[[list[GroupRow]], Awaitable[dict[str, int]]]


@dataclass
class _Batch:
    api_key: str
    rows: Sequence[EventRow]
    received_at_ms: int
    request_seq: int | None
    future: asyncio.Future = field(repr=False)


class GroupCommit:
    """Writes waiting batches together through ``write_rows``.

    Args:
        write_rows: the backend's write (one transaction, committed on return).
        max_in_flight: writes running at once (at most the connections a
            backend can use for them).
        max_rows: a write takes waiting batches until it holds this many
            events (always at least one batch).
    """

    def __init__(self, write_rows: WriteRows, *, max_in_flight: int, max_rows: int) -> None:
        if max_in_flight < 1 or max_rows < 1:
            raise ValueError("max_in_flight and max_rows must be at least 1")
        self._write_rows = write_rows
        self.max_in_flight = max_in_flight
        self.max_rows = max_rows
        self._waiting: deque[_Batch] = deque()
        self._running: set[asyncio.Task] = set()
        self.writes = 0  # for tests and logs: writes started
        self.batches = 0  # batches written

    async def store(
        self, api_key: str, rows: Sequence[EventRow], received_at_ms: int, request_seq: int | None
    ) -> StoreResult:
        """Returns after the commit that holds ``rows``. If the caller is
        cancelled the batch is still written (an event may be stored and
        not acknowledged, as with any lost reply)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Batch(api_key, rows, received_at_ms, request_seq, future))
        self._start_writes()
        return await future

    async def drain(self) -> None:
        """Wait until every batch handed in so far is written (or failed)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def _start_writes(self) -> None:
        while self._waiting and len(self._running) < self.max_in_flight:
            group: list[_Batch] = []
            size = 0
            while self._waiting and (not group or size + len(self._waiting[0].rows) <= self.max_rows):
                batch = self._waiting.popleft()
                group.append(batch)
                size += len(batch.rows)
            task = asyncio.get_running_loop().create_task(self._write(group))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._start_writes()

    async def _write(self, group: list[_Batch]) -> None:
        self.writes += 1
        self.batches += len(group)
        try:
            rows = merge(group)
            after = await self._write_rows(rows)
            results = attribute(group, rows, after)
        except Exception as exc:  # StorageError, or a bug: every waiting request sees it
            for batch in group:
                if not batch.future.done():
                    batch.future.set_exception(exc)
            return
        for batch, result in zip(group, results):
            if not batch.future.done():  # its request may have been cancelled
                batch.future.set_result(result)


def merge(group: Sequence[_Batch]) -> list[GroupRow]:
    """Each event of the group once, in arrival order, with its receipts
    summed (a statement may not insert or update one key twice)."""
    if len(group) == 1:  # a batch's rows are unique already (check_batch)
        b = group[0]
        return [GroupRow(r, r.receipts, b.api_key, b.received_at_ms, b.request_seq) for r in b.rows]
    out: list[GroupRow] = []
    where: dict[str, int] = {}
    for b in group:
        for r in b.rows:
            k = where.get(r.event_id)
            if k is None:
                where[r.event_id] = len(out)
                out.append(GroupRow(r, r.receipts, b.api_key, b.received_at_ms, b.request_seq))
            else:
                out[k] = out[k]._replace(receipts=out[k].receipts + r.receipts)
    return out


def attribute(group: Sequence[_Batch], rows: Sequence[GroupRow], after: dict[str, int]) -> list[StoreResult]:
    """Each batch's share of what the write did. An event whose stored
    receipts equal the group's receipts is new: the first batch holding it
    stored it; every other receipt is a duplicate."""
    sent = {g.row.event_id: g.receipts for g in rows}
    claimed: set[str] = set()
    results = []
    for b in group:
        stored = duplicates = 0
        for r in b.rows:
            if after[r.event_id] == sent[r.event_id] and r.event_id not in claimed:
                claimed.add(r.event_id)
                stored += 1
                duplicates += r.receipts - 1
            else:
                duplicates += r.receipts
        results.append(StoreResult(stored, duplicates))
    return results
