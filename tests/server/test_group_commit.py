"""Group commit (storage/_group.py): the batches of concurrent requests in
one process are written together, and every request still gets exactly its
own share of what the write did.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ingest" / "src"))

from revu_ingest import _wire as wire  # noqa: E402
from revu_ingest.storage import StorageError, StoreResult, make_storage  # noqa: E402
from revu_ingest.storage._group import GroupCommit  # noqa: E402


def rows_of(*event_ids: str) -> list[wire.EventRow]:
    """check_batch's rows for envelopes with these ids (a repeated id is one
    row with more receipts, as in a real batch)."""
    batch = [{"event_id": e, "event": "page_view", "n": i} for i, e in enumerate(event_ids)]
    return wire.check_batch(batch).rows


def test_concurrent_batches_are_merged_and_each_gets_its_share(pg_schema_url):
    storage = make_storage(pg_schema_url, group_writes=1)
    # 12 requests at once; ids overlap between requests and repeat within one.
    batches = [rows_of(f"own-{k}-a", f"own-{k}-b", f"shared-{k % 3}", f"shared-{k % 3}") for k in range(12)]

    async def run() -> tuple[list[StoreResult], int, object]:
        await storage.open()
        try:
            first = await storage.store_events("k", rows_of("shared-0"), 1)  # known before the burst
            results = await asyncio.gather(*[storage.store_events("k", b, 2) for b in batches])
            writes = storage._group.writes
            return [first, *results], writes, await storage.totals()
        finally:
            await storage.close()

    results, writes, totals = asyncio.run(run())
    envelopes = 1 + sum(r.receipts for b in batches for r in b)
    unique = 1 + 12 * 2 + 2  # shared-0 (before), own-k-a and -b, shared-1, shared-2
    assert writes < 13, "the burst was written in fewer writes than requests"
    assert sum(r.stored for r in results) == unique == totals.unique
    assert sum(r.duplicates for r in results) == envelopes - unique == totals.duplicates
    assert totals.received_total == envelopes
    # shared-0 was stored by the first call; shared-1 and shared-2 by the
    # first request of the burst that held them (requests 1 and 2).
    assert results[0] == StoreResult(1, 0)
    assert results[1] == StoreResult(2, 2)  # own a, own b; shared-0 twice
    assert results[2] == StoreResult(3, 1) and results[3] == StoreResult(3, 1)
    assert all(r == StoreResult(2, 2) for r in results[4:])


def test_close_writes_what_was_handed_in(pg_schema_url):
    storage = make_storage(pg_schema_url, group_writes=1)

    async def run() -> tuple[list[StoreResult], object]:
        await storage.open()
        tasks = [asyncio.ensure_future(storage.store_events("k", rows_of(f"e{k}"), 1)) for k in range(20)]
        await asyncio.sleep(0)  # every request has handed its batch in
        await storage.close()
        results = await asyncio.gather(*tasks)
        await storage.open()
        try:
            return results, await storage.totals()
        finally:
            await storage.close()

    results, totals = asyncio.run(run())
    assert [r.stored for r in results] == [1] * 20
    assert totals.unique == 20


def test_a_failed_write_fails_every_request_of_its_group_and_not_the_next():
    calls: list[int] = []

    async def write_rows(rows):
        calls.append(len(rows))
        await asyncio.sleep(0.01)
        if len(calls) == 2:
            raise StorageError("database went away")
        return {g.row.event_id: g.receipts for g in rows}

    async def run():
        group = GroupCommit(write_rows, max_in_flight=1, max_rows=1000)
        first = asyncio.ensure_future(group.store("k", rows_of("a"), 1, None))
        await asyncio.sleep(0)
        # These wait for the first write and then go together; one of them
        # is cancelled meanwhile (its client went away).
        middle = [asyncio.ensure_future(group.store("k", rows_of(f"m{k}"), 1, None)) for k in range(3)]
        cancelled = asyncio.ensure_future(group.store("k", rows_of("gone"), 1, None))
        middle.append(asyncio.ensure_future(group.store("k", rows_of("m3"), 1, None)))
        await asyncio.sleep(0)
        cancelled.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(first, *middle, return_exceptions=True), 5)
        # The next write works; a request cancelled in the middle of a group
        # that succeeds does not keep the others from their replies.
        last = asyncio.ensure_future(group.store("k", rows_of("z"), 1, None))
        await asyncio.sleep(0)
        ys = [asyncio.ensure_future(group.store("k", rows_of("y0"), 1, None))]
        gone = asyncio.ensure_future(group.store("k", rows_of("gone2"), 1, None))
        ys += [asyncio.ensure_future(group.store("k", rows_of(f"y{k}"), 1, None)) for k in (1, 2)]
        await asyncio.sleep(0)
        gone.cancel()
        after_cancel = await asyncio.wait_for(asyncio.gather(*ys), 5)
        return outcomes, await last, after_cancel

    outcomes, last, after_cancel = asyncio.run(run())
    assert outcomes[0] == StoreResult(1, 0)
    assert [type(o) for o in outcomes[1:]] == [StorageError] * 4
    assert calls == [1, 5, 1, 4]  # a cancelled request's batch is still written with its group
    assert last == StoreResult(1, 0)
    assert after_cancel == [StoreResult(1, 0)] * 3


def test_max_rows_splits_a_burst_into_several_writes():
    sizes: list[int] = []

    async def write_rows(rows):
        sizes.append(len(rows))
        await asyncio.sleep(0.001)
        return {g.row.event_id: g.receipts for g in rows}

    async def run():
        group = GroupCommit(write_rows, max_in_flight=1, max_rows=5)
        await asyncio.gather(*[group.store("k", rows_of(f"a{k}", f"b{k}"), 1, None) for k in range(7)])

    asyncio.run(run())
    assert sizes == [2, 4, 4, 4]  # the first alone (nothing else waited yet), then two batches of two per write


@pytest.mark.parametrize("bad", [0, -1])
def test_group_writes_must_be_positive(bad):
    with pytest.raises(ValueError):
        make_storage("postgresql://u@/db?host=/nowhere", group_writes=bad)
