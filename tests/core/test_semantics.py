"""Issue 3 rules: consent, priorities, streams, coalescing and expiry, dedupe
keys, dead letters and their page API, mutations, byte and age caps."""

import json

from helpers import T0, FakeBrowser, FakeServer
from revu import Config, Outbox
from revu import _commands as c
from revu import _facts as f


def _sends(cmds):
    return [cmd for cmd in cmds if isinstance(cmd, c.Send)]


# -- consent ----------------------------------------------------------------

def test_denied_consent_stores_and_sends_nothing():
    b = FakeBrowser(consent="denied", flushAt=1)
    b.record()
    b.record(meta={"category": "marketing"})
    b.advance(10_000)
    assert not b.store and not b.in_flight and not b.server.requests


def test_narrowing_consent_purges_queued_and_dead_letters_at_once_and_counts():
    b = FakeBrowser(server=FakeServer(poison={"bad"}), flushAt=1)
    b.record("bad", meta={"category": "marketing"})
    b.settle()
    assert len(b.dead_store) == 1
    b.feed(f.WentOffline(now_ms=b.now))
    analytics = [b.record(meta={"category": "analytics"}) for _ in range(3)]
    marketing = [b.record(meta={"category": "marketing"}) for _ in range(2)]
    default = b.record()  # no category: "analytics"
    cmds = b.consent({"analytics": True, "marketing": False})
    assert c.Delete(tuple(marketing), reason="consent") in cmds
    assert set(b.store) == set(analytics + [default])
    assert not b.dead_store
    assert b.status["dropped"]["consent"] == 3  # 2 queued + 1 dead letter
    # Granting later does not resurrect them.
    b.consent("granted")
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert set(b.server.arrivals) == set(analytics + [default])


def test_consent_revoked_while_in_flight_purges_at_once_and_ignores_the_outcome():
    b = FakeBrowser(flushAt=2)
    ids = [b.record(), b.record()]
    assert b.in_flight
    b.consent("denied")
    assert b.outbox.queued_ids == [] and b.dropped == {i: "consent" for i in ids}
    assert b.status["dropped"] == {"consent": 2}
    b.deliver("network")  # the request on the wire cannot be recalled; its outcome changes nothing
    assert not b.in_flight and b.outbox.queued_ids == [] and b.status["acked"] == 0


def test_mutations_need_no_consent():
    b = FakeBrowser(consent="denied")
    b.enqueue("hello")
    b.settle()
    assert len(b.server.applied) == 1


def test_bad_consent_state_is_an_error_and_changes_nothing():
    b = FakeBrowser()
    b.record()
    cmds = b.feed(f.ConsentChanged(now_ms=b.now, consent="maybe"))
    assert any(isinstance(x, c.Emit) and x.name == "error" and x.detail["code"] == "invalid_consent" for x in cmds)
    assert b.status["consent"] == "granted" and len(b.outbox.queued_ids) == 1


# -- priorities and streams ----------------------------------------------------

def test_higher_priority_is_sent_first():
    b = FakeBrowser(maxBatch=3)
    b.feed(f.WentOffline(now_ms=b.now))
    low = b.record(priority="low")
    normal = b.record()
    high = [b.record(priority="high") for _ in range(2)]
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert b.server.arrivals == high + [normal, low]


def test_stream_order_beats_priority():
    b = FakeBrowser(maxBatch=1)
    b.feed(f.WentOffline(now_ms=b.now))
    first = b.record(stream="chat", priority="low")
    second = b.record(stream="chat", priority="high")
    loose = b.record(priority="normal")
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    arrivals = b.server.arrivals
    assert arrivals.index(first) < arrivals.index(second)
    assert arrivals[0] == loose, "the low stream head waits behind a normal event"


def test_eviction_prefers_low_priority_and_coalescible_then_oldest():
    b = FakeBrowser(maxQueue=4, maxBatch=4, flushAt=4, coalesce={"typing": {"windowMs": 1}})
    b.feed(f.WentOffline(now_ms=b.now))
    high = b.record(priority="high")
    normal = b.record()
    typing = b.record("typing", stream="a")
    low = b.record(priority="low")
    extra = [b.record(), b.record()]
    assert b.dropped == {typing: "overflow", low: "overflow"}
    assert b.outbox.queued_ids == [high, normal] + extra


def test_mutations_are_evicted_last():
    b = FakeBrowser(maxQueue=2, maxBatch=2, flushAt=2)
    b.feed(f.WentOffline(now_ms=b.now))
    m = b.enqueue("keep me")
    e1 = b.record()
    e2 = b.record()
    assert b.dropped == {e1: "overflow"}
    assert b.outbox.queued_ids == [m, e2]


def test_a_failing_mutation_stream_blocks_only_itself():
    b = FakeBrowser(flushAt=1)
    a1 = b.enqueue("a1", stream="room-a")
    a2 = b.enqueue("a2", stream="room-a")
    b1 = b.enqueue("b1", stream="room-b")
    sends = list(b.in_flight.values())
    assert [s.kind for s in sends] == ["mutation", "mutation"]
    assert {s.event_ids for s in sends} == {(a1,), (b1,)}, "one in flight per stream, heads only"
    # room-a's server is down; room-b and analytics keep flowing.
    a_batch = next(k for k, s in b.in_flight.items() if s.event_ids == (a1,))
    b.feed(f.SendFailed(now_ms=b.now, batch_id=a_batch, error="network_error"))
    del b.in_flight[a_batch]
    assert b.status["streams"]["room-a"]["state"] == "backing_off"
    b.deliver("ok", kind="mutation")  # b1
    ev = b.record("page_view")
    b.deliver("ok", kind="events")
    assert b.server.arrivals == [ev]
    assert not any(s.event_ids == (a2,) for s in b.in_flight.values()), "a2 waits behind a1"
    b.advance(1000)
    b.settle()
    assert [b.server.mutations[k]["body"]["text"] for k in b.server.applied] == ["b1", "a1", "a2"]


def test_mutation_request_shape_and_idempotency_header():
    b = FakeBrowser()
    b.enqueue("hi", stream="room", key="k-1")
    send = next(iter(b.in_flight.values()))
    assert (send.method, send.url, send.kind) == ("POST", "https://app.test/chat/room", "mutation")
    assert send.headers == {"Content-Type": "application/json", "Idempotency-Key": "k-1"}
    assert json.loads(send.body) == {"text": "hi"}


def test_mutation_ack_loss_and_reload_apply_once():
    b = FakeBrowser()
    b.enqueue("once", key="k-once")
    b.reload(requests_arrive=True)  # applied, reply lost with the page
    b.settle()
    assert b.server.applied == ["k-once"] and b.server.replays == 1


def test_refused_mutation_is_dead_lettered_with_the_code():
    b = FakeBrowser(server=FakeServer(refuse={"nope"}))
    m = b.enqueue("nope")
    b.settle()
    assert b.dead_ids == {m}
    failed = next(e for e in b.emitted if e.name == "outbox:failed")
    assert failed.detail["kind"] == "mutation" and failed.detail["error"]["reason"] == "refused:refused_by_test"


# -- coalescing, expiry ----------------------------------------------------------

def test_typing_events_coalesce_within_the_window():
    b = FakeBrowser(coalesce={"typing": {"windowMs": 1000}})
    b.feed(f.WentOffline(now_ms=b.now))
    t1 = b.record("typing", stream="chat-1", state="start")
    b.advance(300)
    t2 = b.record("typing", stream="chat-1", state="tick")
    other = b.record("typing", stream="chat-2")
    b.advance(2000)
    t3 = b.record("typing", stream="chat-1", state="stop")
    assert b.dropped == {t1: "coalesced"}
    assert b.outbox.queued_ids == [t2, other, t3]
    assert b.status["dropped"] == {"coalesced": 1}


def test_stale_ticks_are_dropped_before_sending():
    b = FakeBrowser(coalesce={"typing": {"ttlMs": 3000}})
    b.feed(f.WentOffline(now_ms=b.now))
    tick = b.record("typing")
    keep = b.record("message")
    b.advance(5000)
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert b.server.arrivals == [keep] and b.dropped == {tick: "expired"}


def test_per_event_ttl_and_max_age():
    b = FakeBrowser(maxAgeMs=60_000)
    b.feed(f.WentOffline(now_ms=b.now))
    short = b.record(meta={"ttl_ms": 1000})
    old = b.record()
    b.advance(30_000)
    fresh = b.record()
    b.advance(30_001)
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    assert b.dropped == {short: "expired", old: "max_age"}
    assert b.server.arrivals == [fresh]


# -- semantic dedupe keys ----------------------------------------------------------

def test_same_key_twice_while_queued_keeps_one():
    b = FakeBrowser()
    b.feed(f.WentOffline(now_ms=b.now))
    first = b.record("message", keys={"messageId": "m1"})
    second = b.record("message", keys={"messageId": "m1"})
    other = b.record("message", keys={"messageId": "m2"})
    assert b.outbox.queued_ids == [first, other] and b.dropped == {second: "duplicate"}
    b.feed(f.WentOnline(now_ms=b.now))
    b.settle()
    again = b.record("message", keys={"messageId": "m1"})
    b.settle()
    assert again in b.server.arrivals, "after the ack the key is free again"


# -- dead letters and their page API -----------------------------------------------

def test_max_attempts_dead_letters_after_server_errors_only():
    b = FakeBrowser(flushAt=1, maxAttempts=3)
    e = b.record()
    for _ in range(5):
        b.deliver("network")
        b.advance(b.timers["retry"] - b.now)
    assert not b.dead_ids, "network errors do not use up attempts"
    for _ in range(3):
        b.deliver("status", status=500)
        if "retry" in b.timers:
            b.advance(b.timers["retry"] - b.now)
    assert b.dead_ids == {e}
    assert json.loads(b.dead_store[e])["reason"] == "max_attempts:http_500"


def test_retry_a_dead_letter_settles_true_when_acked():
    server = FakeServer(poison={"flaky"})
    b = FakeBrowser(server=server, flushAt=1)
    e = b.record("flaky")
    b.settle()
    assert b.dead_ids == {e}
    server.poison.clear()
    retry = b.retry(e)
    assert any(isinstance(x, c.Requeue) and x.records[0]["env"]["event_id"] == e for x in b.history)
    assert e in b.store and e not in b.dead_store
    b.deliver("network")
    assert b.flushes[retry] is None, "a transient failure does not settle a retry"
    b.advance(1000)
    b.settle()
    assert b.flushes[retry] is True and b.server.arrivals == [e]


def test_retry_that_fails_for_good_settles_false_and_drop_removes():
    b = FakeBrowser(server=FakeServer(poison={"bad"}), flushAt=1)
    e = b.record("bad")
    b.settle()
    retry = b.retry(e)
    b.settle()
    assert b.flushes[retry] is False and e in b.dead_store
    cmds = b.feed(f.DeadLetterDropped(now_ms=b.now, event_id=e))
    assert c.DeleteDeadLetters((e,)) in cmds and not b.dead_store
    assert b.status["dropped"] == {"by_page": 1} and b.status["deadLettered"] == 0
    again = b.retry(e)
    assert b.flushes[again] is False


# -- caps ---------------------------------------------------------------------------

def test_byte_cap_evicts_and_counts():
    b = FakeBrowser(maxQueueBytes=1000, flushAt=100, maxBatch=50)
    b.feed(f.WentOffline(now_ms=b.now))
    ids = [b.record(pad="x" * 150) for _ in range(10)]
    assert b.outbox.status()["queuedBytes"] <= 1000
    assert b.status["dropped"]["overflow_bytes"] == len([i for i in ids if b.dropped.get(i) == "overflow_bytes"]) > 0
    assert b.outbox.queued_ids == ids[-len(b.outbox.queued_ids):], "the newest stay"


def test_restore_applies_consent_dedupe_and_counts_shim_drops():
    outbox = Outbox(Config.from_options({"apiKey": "k"}))
    from helpers import record_value
    records = [
        record_value("a", 1, keys={"messageId": "m"}),
        record_value("b", 2, keys={"messageId": "m"}),
        record_value("c", 3, meta={"category": "marketing"}),
    ]
    cmds = outbox.handle(f.Restored(now_ms=T0, records=tuple({"id": r["env"]["event_id"], "raw": json.dumps(r)} for r in records),
                                    consent={"analytics": True}, dropped_before_start={"consent": 2}))
    assert outbox.queued_ids == ["a"]
    assert c.Delete(("b",), reason="duplicate") in cmds and c.Delete(("c",), reason="consent") in cmds
    assert outbox.status()["dropped"] == {"consent": 3, "duplicate": 1}


def test_a_poison_purged_mid_flight_does_not_condemn_its_batch_mate():
    # Found by the property test: the batch [good, poison] is refused after
    # consent purged the poison; the good event alone must be retried, not dead-lettered.
    b = FakeBrowser(server=FakeServer(poison={"poison"}), flushAt=2)
    good = b.record("ok")
    b.record("poison", meta={"category": "marketing"})
    b.consent({"analytics": True})
    b.settle()
    assert b.server.arrivals == [good] and not b.dead_ids


def test_a_consent_blocked_record_says_nothing_about_storage():
    # The shim announces blocked events (so the core counts them) with
    # durable=False: nothing was written, but storage did not fail.
    outbox = Outbox(Config.from_options({"apiKey": "k", "consent": "denied"}))
    outbox.handle(f.Restored(now_ms=T0, consent="denied"))
    from helpers import record_value
    cmds = outbox.handle(f.Recorded(now_ms=T0, record=record_value("a", 1), durable=False))
    assert c.Delete(("a",), reason="consent") in cmds
    assert outbox.status()["durable"] is True and outbox.status()["dropped"] == {"consent": 1}
