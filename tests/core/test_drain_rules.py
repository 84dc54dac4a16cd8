"""Issue 11 rules: large compressed drains when no unload is near, pacing on
slow or metered connections, flushes for another tab, and requests another
tab may still have in flight."""

from __future__ import annotations

import json

from helpers import T0, FakeBrowser, record_value
from revu import _commands as c
from revu import _facts as f


def _sends(cmds):
    return [cmd for cmd in cmds if isinstance(cmd, c.Send)]


def _backlog(b, n, **props):
    b.feed(f.WentOffline(now_ms=b.now))
    ids = [b.record(**props) for _ in range(n)]
    return ids


def test_a_backlog_drains_in_large_batches_while_the_page_is_visible():
    b = FakeBrowser(maxQueue=5000)
    ids = _backlog(b, 2500)
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    sizes = [len(batch) for batch in b.sent_batches()]
    assert sizes == [1000, 1000, 500]
    sends = [cmd for cmd in b.history if isinstance(cmd, c.Send)]
    assert [s.keepalive for s in sends] == [len(s.body.encode()) <= 60_000 for s in sends]
    assert sends[0].keepalive is False, "a large body is over the keepalive budget: sent without it"
    assert all(len(s.body.encode()) <= 524_288 for s in sends)
    assert b.server.arrivals == ids


def test_a_hidden_page_keeps_to_the_keepalive_budget():
    b = FakeBrowser()
    _backlog(b, 120)
    b.feed(f.VisibilityChanged(now_ms=b.now, hidden=True))
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert [len(batch) for batch in b.sent_batches()] == [50, 50, 20]
    assert all(s.keepalive for s in b.history if isinstance(s, c.Send))


def test_the_byte_budget_bounds_a_large_batch():
    b = FakeBrowser(drainBatchBytes=100_000)
    _backlog(b, 300, pad="x" * 1000)
    b.feed(f.WentOnline(now_ms=b.now))
    sends = _sends(b.history)
    assert 60 < len(sends[0].event_ids) < 100 and len(sends[0].body.encode()) <= 100_000


def test_compression_is_learnt_from_the_reply_and_only_for_bodies_worth_it():
    b = FakeBrowser(flushAt=30)
    assert b.outbox.status()["compression"] == "pending"
    [b.record() for _ in range(30)]
    first = _sends(b.history)[-1]
    assert first.encoding is None, "auto: nothing compressed before the endpoint says it accepts gzip"
    batch_id = first.batch_id
    del b.in_flight[batch_id]
    b.feed(f.SendSucceeded(now_ms=b.now, batch_id=batch_id, reply=json.dumps({"ok": True, "accept_encoding": ["gzip"]})))
    assert b.outbox.status()["compression"] == "gzip"
    [b.record() for _ in range(30)]
    assert _sends(b.history)[-1].encoding == "gzip"
    small = FakeBrowser(flushAt=1, compression="gzip")
    small.record()
    assert _sends(small.history)[-1].encoding is None, "a body under compressMinBytes (1024) is sent as is"


def test_a_415_on_a_compressed_body_turns_compression_off_and_retries():
    b = FakeBrowser(flushAt=30, compression="gzip")
    ids = [b.record() for _ in range(30)]
    send = _sends(b.history)[-1]
    assert send.encoding == "gzip"
    del b.in_flight[send.batch_id]
    b.feed(f.SendFailed(now_ms=b.now, batch_id=send.batch_id, status=415))
    assert b.outbox.status()["compression"] == "off" and b.outbox.status()["deadLettered"] == 0
    b.settle()
    assert b.server.arrivals == ids
    assert _sends(b.history)[-1].encoding is None


def test_compression_off_never_compresses():
    b = FakeBrowser(flushAt=30, compression="off")
    [b.record() for _ in range(30)]
    batch_id = next(iter(b.in_flight))
    del b.in_flight[batch_id]
    b.feed(f.SendSucceeded(now_ms=b.now, batch_id=batch_id, reply={"accept_encoding": ["gzip"]}))
    [b.record() for _ in range(30)]
    assert all(s.encoding is None for s in _sends(b.history))


def test_a_slow_or_metered_connection_paces_large_drains():
    b = FakeBrowser()
    ids = _backlog(b, 200)
    b.feed(f.NetworkChanged(now_ms=b.now, save_data=True, effective_type="4g"))
    b.feed(f.WentOnline(now_ms=b.now))
    b.deliver("ok")
    assert len(b.server.arrivals) == 50, "one maxBatch request"
    assert not b.in_flight, "then it waits"
    b.advance(29_000)
    assert not b.in_flight
    b.advance(1_000)
    assert len(b.in_flight) == 1
    urgent = b.record(priority="high")
    b.deliver("ok")
    assert len(b.in_flight) == 1 and list(b.in_flight.values())[0].event_ids == (urgent,), "high priority never waits"
    b.deliver("ok")
    flush = b.flush()
    b.settle()
    assert b.flushes[flush] is True and set(b.server.arrivals) == {*ids, urgent}


def test_2g_paces_and_4g_resumes():
    b = FakeBrowser()
    _backlog(b, 200)
    b.feed(f.NetworkChanged(now_ms=b.now, effective_type="2g"))
    b.feed(f.WentOnline(now_ms=b.now))
    b.deliver("ok")
    assert not b.in_flight and b.outbox.status()["network"]["slow"] is True
    b.feed(f.NetworkChanged(now_ms=b.now, effective_type="4g"))
    assert b.in_flight, "back to a fast connection: the drain resumes at once"


def test_a_flush_for_another_tab_waits_only_for_its_events():
    b = FakeBrowser(flushAt=1000)
    mine = [b.record() for _ in range(3)]
    others = [b.record() for _ in range(3)]
    b.flushes["tab-f1"] = None
    b.feed(f.FlushRequested(now_ms=b.now, flush_id="tab-f1", event_ids=tuple(mine + ["gone-already"])))
    b.deliver("ok")
    assert b.flushes["tab-f1"] is True
    assert set(others) <= set(b.server.arrivals)


def test_events_another_tab_may_still_be_sending_wait_until_its_request_is_over():
    b = FakeBrowser(flushAt=1)
    b.store.update({f"e{i}": json.dumps(record_value(f"e{i}", i + 1, created_at=b.now)) for i in range(3)})
    b.outbox = type(b.outbox)(b.config)
    cmds = b.feed(f.Restored(now_ms=b.now, records=tuple({"id": k, "raw": v} for k, v in b.store.items()),
                             in_flight_elsewhere={"e0": b.now + 10_000, "e1": b.now + 10_000}))
    assert [s.event_ids for s in _sends(cmds)] == [("e2",)]
    b.deliver("ok")
    b.advance(9_999)
    assert not b.in_flight
    b.advance(1)
    b.settle()
    assert set(b.server.arrivals) == {"e0", "e1", "e2"}
    assert T0 <= b.now


def test_a_beacon_holds_its_events_until_it_can_no_longer_be_in_flight():
    b = FakeBrowser(flushAt=1000)
    ids = [b.record() for _ in range(3)]
    b.feed(f.Beaconed(now_ms=b.now, event_ids=tuple(ids[:2]), queued=True, until_ms=b.now + 12_000))
    b.flushes["f1"] = None
    cmds = b.feed(f.FlushRequested(now_ms=b.now, flush_id="f1"))
    assert [s.event_ids for s in _sends(cmds)] == [(ids[2],)], "only what the beacon does not carry"
    b.deliver("ok")
    b.advance(11_999)
    assert not b.in_flight and b.server.arrivals == [ids[2]]
    b.advance(1)
    b.settle()
    assert sorted(b.server.arrivals) == sorted(ids) and b.server.duplicates == 0


def test_a_send_the_shim_skipped_for_a_beacon_is_no_failure_and_the_rest_goes_on():
    b = FakeBrowser(flushAt=1000)
    ids = [b.record() for _ in range(4)]
    b.flushes["f1"] = None
    [send] = _sends(b.feed(f.FlushRequested(now_ms=b.now, flush_id="f1")))
    assert send.event_ids == tuple(ids)
    # The page hid: the beacon carried the first three before the shim saw this send.
    b.feed(f.Beaconed(now_ms=b.now, event_ids=tuple(ids[:3]), queued=True, until_ms=b.now + 12_000))
    del b.in_flight[send.batch_id]
    cmds = b.feed(f.SendSkipped(now_ms=b.now, batch_id=send.batch_id))
    assert [s.event_ids for s in _sends(cmds)] == [(ids[3],)]
    assert not [cmd for cmd in cmds if isinstance(cmd, c.Emit) and cmd.name == "outbox:retry"]
    status = b.outbox.status()
    assert status["failures"] == 0 and status["state"] == "sending" and status["lastError"] is None, status
    # A skipped send of an unknown batch is ignored.
    assert b.feed(f.SendSkipped(now_ms=b.now, batch_id="nope")) == []
