"""Scenario tests: a list of facts in, the exact commands out."""

import json

import pytest

from helpers import T0, FakeBrowser, FakeServer, record_value
from revu import Config, Outbox, State, UsageError
from revu import _commands as c
from revu import _facts as f


def _outbox(**options):
    outbox = Outbox(Config.from_options({"apiKey": "k", "host": "https://in.test", **options}))
    outbox.handle(f.Restored(now_ms=T0))
    return outbox


def test_first_record_arms_the_interval_timer_and_reports():
    outbox = _outbox()
    rec = record_value("a", T0 * 1000)
    assert outbox.handle(f.Recorded(now_ms=T0, record=rec)) == [
        c.SetTimer("flush", T0 + 5000),
        c.Emit("outbox:update", {"size": 1, "head": rec["env"]}),
        c.ReportStatus({**outbox.status()}),
    ]
    assert outbox.status()["queued"] == 1 and outbox.state is State.IDLE


def test_flush_at_sends_one_batch_with_the_wire_body():
    outbox = _outbox(flushAt=2)
    outbox.handle(f.Recorded(now_ms=T0, record=record_value("a", 1)))
    cmds = outbox.handle(f.Recorded(now_ms=T0 + 7, record=record_value("b", 2)))
    sends = [cmd for cmd in cmds if isinstance(cmd, c.Send)]
    assert len(sends) == 1
    send = sends[0]
    assert (send.batch_id, send.url, send.event_ids, send.keepalive, send.timeout_ms) == (
        "b1", "https://in.test/v1/behavior/events", ("a", "b"), True, 10_000)
    body = json.loads(send.body)
    assert body == {"api_key": "k", "batch": [
        {"event_id": "a", "event": "click", "properties": {}, "created_at": T0, "sent_at": T0 + 7},
        {"event_id": "b", "event": "click", "properties": {}, "created_at": T0, "sent_at": T0 + 7},
    ]}
    assert outbox.state is State.SENDING


def test_transient_failure_backs_off_exactly():
    outbox = _outbox(flushAt=1)
    outbox.handle(f.Recorded(now_ms=T0, record=record_value("a", 1)))
    cmds = outbox.handle(f.SendFailed(now_ms=T0 + 50, batch_id="b1", status=503, jitter=0.41))
    assert cmds[0] == c.SetTimer("retry", T0 + 50 + 918)
    assert outbox.state is State.BACKING_OFF
    assert outbox.status()["backoffMs"] == 918 and outbox.status()["lastError"] == "http_503"


def test_backoff_sequence_and_retry_after_floor():
    b = FakeBrowser(flushAt=1)
    b.record()
    delays = []
    for status, retry_after in [(503, None), (None, None), (503, None), (429, "1"), (429, "30")]:
        start = b.now
        if status is None:
            b.deliver("network")
        else:
            b.deliver("status", status=status, retry_after=retry_after)
        delays.append(b.timers["retry"] - start)
        b.advance(b.timers["retry"] - b.now)
        assert b.in_flight, "the retry timer re-sends"
    # 1 s doubling; Retry-After 1 s is below the backoff (8 s), 30 s is above 16 s.
    assert delays == [1000, 2000, 4000, 8000, 30000]
    b.deliver("ok")
    assert b.server.arrivals == [b.recorded[0][0]] and b.status["failures"] == 0


def test_backoff_is_capped_at_sixty_seconds():
    b = FakeBrowser(flushAt=1)
    b.record()
    for _ in range(9):
        start = b.now
        b.deliver("status", status=500)
        delay = b.timers["retry"] - start
        b.advance(delay)
    assert delay == 60_000


def test_success_resets_the_failure_counter():
    b = FakeBrowser(flushAt=1)
    b.record()
    b.deliver("status", status=503)
    b.advance(1000)
    b.deliver("status", status=503)
    b.advance(2000)
    b.deliver("ok")
    b.record()
    start = b.now
    b.deliver("status", status=503)
    assert b.timers["retry"] - start == 1000


def test_online_resets_backoff_and_flushes_at_once():
    b = FakeBrowser(flushAt=1)
    b.record()
    for _ in range(3):
        b.deliver("network")
        b.advance(b.timers["retry"] - b.now)
    b.deliver("network")
    assert b.outbox.state is State.BACKING_OFF and b.status["failures"] == 4
    cmds = b.feed(f.WentOnline(now_ms=b.now))
    assert c.CancelTimer("retry") in cmds
    assert any(isinstance(cmd, c.Send) for cmd in cmds)
    assert b.status["failures"] == 0
    b.deliver("network")
    assert b.timers["retry"] - b.now == 1000


def test_offline_holds_sends_until_online():
    b = FakeBrowser(flushAt=2)
    b.feed(f.WentOffline(now_ms=b.now))
    for _ in range(5):
        b.record()
    b.advance(6000)
    assert not b.in_flight
    b.feed(f.WentOnline(now_ms=b.now))
    assert len(b.in_flight) == 1
    b.settle()
    assert len(b.server.arrivals) == 5


def test_interval_timer_drains_below_flush_at():
    b = FakeBrowser()
    b.record()
    b.advance(4999)
    assert not b.in_flight
    b.advance(1)
    assert len(b.in_flight) == 1


def test_large_queue_drains_over_several_requests_of_max_batch():
    b = FakeBrowser(maxBatch=50, drainBatch=50)
    b.feed(f.WentOffline(now_ms=b.now))
    for _ in range(120):
        b.record()
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert [len(batch) for batch in b.sent_batches()] == [50, 50, 20]
    assert b.server.arrivals == [eid for eid, _ in b.recorded]


def test_manual_flush_resolves_true_when_all_queued_at_the_call_is_acked():
    b = FakeBrowser(maxBatch=10, drainBatch=10)
    for _ in range(25):
        b.record()
    flush_id = b.flush()
    b.record()  # recorded after the call: not waited for
    b.deliver("ok")
    b.deliver("ok")
    assert b.flushes[flush_id] is None
    b.deliver("ok")
    assert b.flushes[flush_id] is True


def test_manual_flush_false_on_failure_and_true_on_empty():
    b = FakeBrowser()
    assert b.flushes[b.flush()] is True
    b.record()
    flush_id = b.flush()
    b.deliver("network")
    assert b.flushes[flush_id] is False


def test_manual_flush_skips_the_backoff_wait():
    b = FakeBrowser(flushAt=1)
    b.record()
    b.deliver("status", status=503)
    b.feed(f.TimerFired(now_ms=b.now, key="retry"))  # early: ignored
    assert not b.in_flight
    flush_id = b.flush()
    assert b.in_flight and "retry" not in b.timers
    b.deliver("ok")
    assert b.flushes[flush_id] is True


def test_max_queue_drops_oldest_counted_and_reported():
    b = FakeBrowser(maxQueue=5, flushAt=5, maxBatch=5)
    b.feed(f.WentOffline(now_ms=b.now))
    ids = [b.record() for _ in range(8)]
    assert b.outbox.queued_ids == ids[3:]
    assert b.dropped == {i: "overflow" for i in ids[:3]}
    assert b.status["dropped"] == {"overflow": 3}
    assert set(b.store) == set(ids[3:])


def test_overflow_never_drops_the_batch_in_flight():
    b = FakeBrowser(maxQueue=3, flushAt=2, maxBatch=2)
    ids = [b.record() for _ in range(2)]
    assert list(b.in_flight.values())[0].event_ids == tuple(ids)
    more = [b.record() for _ in range(3)]
    assert b.outbox.queued_ids == ids + more[-1:]
    b.settle()
    assert set(b.server.arrivals) == set(ids + more[-1:])


def test_flush_settles_false_when_its_events_are_dropped():
    b = FakeBrowser(maxQueue=2, flushAt=2, maxBatch=2)
    b.feed(f.WentOffline(now_ms=b.now))
    b.record()
    b.record()
    b.feed(f.WentOnline(now_ms=b.now))
    flush_id = b.flush()
    b.deliver("network")
    assert b.flushes[flush_id] is False


def test_poison_event_is_isolated_by_bisection_and_dead_lettered():
    server = FakeServer(poison={"bad"})
    b = FakeBrowser(server=server, flushAt=8, maxBatch=8)
    ids = [b.record("bad" if i == 5 else "ok", i=i) for i in range(8)]
    b.settle()
    good = [i for n, i in enumerate(ids) if n != 5]
    assert server.arrivals == good
    assert b.dead_ids == {ids[5]}
    failed = [e for e in b.emitted if e.name == "outbox:failed"]
    assert len(failed) == 1 and failed[0].detail["envelope"]["event_id"] == ids[5]
    assert failed[0].detail["error"]["reason"] == "http_422"
    assert json.loads(b.dead_store[ids[5]])["reason"] == "http_422"
    assert b.status["deadLettered"] == 1 and b.status["queued"] == 0
    assert len(b.sent_batches()) <= 1 + 2 * 3 + 1  # log2(8) rounds


def test_events_rejected_in_a_2xx_reply_are_dead_lettered_rest_acked():
    server = FakeServer(reject={"bad"})
    b = FakeBrowser(server=server, flushAt=3)
    ids = [b.record(name) for name in ("ok", "bad", "ok")]
    b.settle()
    assert server.arrivals == [ids[0], ids[2]]
    assert b.dead_ids == {ids[1]}
    assert json.loads(b.dead_store[ids[1]])["reason"] == "rejected:bad_event"


def test_single_event_permanent_failure_does_not_block_the_next():
    b = FakeBrowser(flushAt=1)
    first = b.record()
    b.deliver("status", status=400)
    assert b.dead_ids == {first}
    second = b.record()
    b.settle()
    assert b.server.arrivals == [second]


def test_dead_letter_list_is_capped():
    b = FakeBrowser(server=FakeServer(poison={"bad"}), flushAt=1, maxDeadLetters=2)
    for _ in range(4):
        b.record("bad")
        b.settle()
    assert len(b.dead_store) == 2 and b.status["dropped"] == {"dead_letter_overflow": 2}


def test_restore_orders_by_seq_drains_backlog_and_removes_corrupt():
    outbox = Outbox(Config.from_options({"apiKey": "k"}))
    records = [
        {"id": "b", "raw": json.dumps(record_value("b", 20))},
        {"id": "junk", "raw": "{not json"},
        {"id": "a", "raw": json.dumps(record_value("a", 10))},
    ]
    cmds = outbox.handle(f.Restored(now_ms=T0, records=tuple(records), dropped_before_start={"overflow": 4}))
    assert c.Quarantine(({"id": "junk", "area": "queue", "reason": "not_json"},)) in cmds
    assert any(isinstance(cmd, c.Emit) and cmd.name == "error" and cmd.detail["code"] == "quarantined" for cmd in cmds)
    sends = [cmd for cmd in cmds if isinstance(cmd, c.Send)]
    assert [s.event_ids for s in sends] == [("a", "b")]
    assert outbox.status()["dropped"] == {"overflow": 4}
    assert outbox.status()["quarantined"] == {"not_json": 1}
    assert isinstance(cmds[0], c.PublishRules) or any(isinstance(cmd, c.PublishRules) for cmd in cmds)


def test_reload_keeps_everything_not_acked():
    b = FakeBrowser(flushAt=5)
    ids = [b.record() for _ in range(12)]
    b.deliver("ok")  # first 5 acked
    b.reload()  # the next batch was never sent
    b.settle()
    assert b.server.arrivals == ids and b.server.duplicates == 0


def test_ack_loss_resend_is_a_counted_duplicate_not_a_loss():
    b = FakeBrowser(flushAt=3)
    ids = [b.record() for _ in range(3)]
    b.deliver("ack_loss")
    b.advance(1000)
    b.deliver("ok")
    assert b.server.arrivals == ids and b.server.duplicates == 3
    assert b.status["retried"] == 1


def test_stale_outcomes_and_timers_are_ignored():
    b = FakeBrowser(flushAt=1)
    b.record()
    assert b.feed(f.SendSucceeded(now_ms=b.now, batch_id="b999")) == []
    assert b.feed(f.TimerFired(now_ms=b.now, key="nope")) == []
    assert b.outbox.state is State.SENDING


def test_oversized_restored_record_goes_without_keepalive():
    outbox = Outbox(Config.from_options({"apiKey": "k"}))
    big = record_value("a", 1)
    big["env"]["properties"] = {"blob": "x" * 61_000}
    cmds = outbox.handle(f.Restored(now_ms=T0, records=({"id": "a", "raw": json.dumps(big)},)))
    send = next(cmd for cmd in cmds if isinstance(cmd, c.Send))
    assert send.keepalive is False and send.event_ids == ("a",)


def test_memory_only_is_reported():
    b = FakeBrowser(durable=False)
    assert b.status["durable"] is False
    b2 = FakeBrowser()
    b2.feed(f.StorageFailed(now_ms=b2.now, operation="write", error="QuotaExceededError"))
    assert b2.status["durable"] is False
    assert any(e.name == "error" and e.detail["code"] == "storage_failed" for e in b2.emitted)


def test_duplicate_recorded_fact_is_harmless():
    outbox = _outbox()
    rec = record_value("a", 1)
    outbox.handle(f.Recorded(now_ms=T0, record=rec))
    assert outbox.handle(f.Recorded(now_ms=T0, record=rec)) == []
    assert outbox.queued_ids == ["a"]


def test_invalid_recorded_value_is_quarantined_alone():
    outbox = _outbox()
    bad = {"v": 1, "seq": 1, "env": {"event_id": "a", "event": "", "properties": {}, "created_at": 1}}
    cmds = outbox.handle_all([f.Recorded(now_ms=T0, record=bad), f.Recorded(now_ms=T0, record=record_value("b", 2))])
    assert c.Quarantine(({"id": "a", "area": "queue", "reason": "invalid_record"},)) in cmds
    assert outbox.status()["quarantined"] == {"invalid_record": 1}
    assert outbox.queued_ids == ["b"]


def test_facts_before_restored_are_refused():
    outbox = Outbox(Config.from_options({"apiKey": "k"}))
    with pytest.raises(UsageError):
        outbox.handle(f.WentOnline(now_ms=T0))
    outbox.handle(f.Restored(now_ms=T0))
    with pytest.raises(UsageError):
        outbox.handle(f.Restored(now_ms=T0))


def test_beacon_outcomes_are_counted():
    b = FakeBrowser()
    b.record()
    b.feed(f.Beaconed(now_ms=b.now, event_ids=("x",), queued=True))
    assert b.status["beaconed"] == 1
    assert b.outbox.queued_ids, "beaconed events stay queued until a later ack"


def test_bisection_cost_is_logarithmic_per_poison():
    for poison_at in (0, 17, 49):
        b = FakeBrowser(server=FakeServer(poison={"bad"}), flushAt=50, maxBatch=50)
        ids = [b.record("bad" if i == poison_at else "ok") for i in range(50)]
        b.settle()
        assert b.server.arrivals == [i for n, i in enumerate(ids) if n != poison_at]
        # 1 refused batch, then at most 2 requests per halving (log2 50 < 6), then the rest at once.
        assert len(b.sent_batches()) <= 1 + 2 * 6 + 1, (poison_at, [len(x) for x in b.sent_batches()])


def test_two_poisons_are_both_isolated():
    b = FakeBrowser(server=FakeServer(poison={"bad"}), flushAt=40, maxBatch=40)
    ids = [b.record("bad" if i in (3, 30) else "ok") for i in range(40)]
    b.settle()
    assert b.dead_ids == {ids[3], ids[30]}
    assert len(b.server.arrivals) == 38 and len(b.sent_batches()) <= 2 * (1 + 2 * 6 + 1)
