"""Every input is untrusted: stored values, facts, server replies. The core
refuses or quarantines a bad one alone, and never dies of it."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import T0, FakeBrowser, record_value
from revu import Bridge, Config, Outbox
from revu import _commands as c
from revu import _facts as f
from revu._records import (
    MAX_RECORD_BYTES, CorruptRecord, decode_dead_letter, decode_record, json_depth_exceeds, repair_surrogates,
)

UUID = "7d5e0c1e-9a7b-4a39-9d0b-3f0c2d6c1a11"


def _raw(event_id=UUID, **over):
    value = record_value(event_id, 1_700_000_000_000_001)
    value.update(over)
    return json.dumps(value, separators=(",", ":"))


# -- stored values ---------------------------------------------------------------

@pytest.mark.parametrize(("key", "raw", "reason"), [
    (UUID, "x" * (MAX_RECORD_BYTES + 1), "too_large"),
    (UUID, '{"v":1,"seq":1,"env":{"event_id":"' + UUID + '","p":"' + "é" * 40_000 + '"}}', "too_large"),
    (UUID, "[" * 10_000 + "]" * 10_000, "too_deep"),
    (UUID, '{"a":' * 3_000 + "1" + "}" * 3_000, "too_deep"),
    (UUID, "{not json", "not_json"),
    (UUID, "[1, 2]", "not_json"),
    (UUID, '{"v": 1, "seq": 1, "env": {"event_id": "x", "event": "e", "properties": {"n": NaN}, "created_at": 1}}',
     "not_json"),
    (UUID, _raw(v=2), "unknown_version"),
    (UUID, _raw(v="1"), "unknown_version"),
    (UUID, json.dumps({"seq": 1, "env": {}}), "unknown_version"),
    (UUID, _raw(seq=2**53), "unsafe_seq"),
    (UUID, _raw(seq=-1), "unsafe_seq"),
    (UUID, _raw(seq=1.5), "unsafe_seq"),
    ("not-a-uuid", _raw(), "key_mismatch"),
    ("0b8f2c4e-1d2a-4c3b-8e9f-123456789abc", _raw(), "key_mismatch"),
    (UUID, _raw(extra=1), "invalid_record"),
    (UUID, _raw(sealed={"alg": "A256GCM"}), "invalid_record"),
    (UUID, _raw(meta={"pii": 3}), "invalid_record"),
])
def test_stored_values_fail_with_their_reason(key, raw, reason):
    with pytest.raises(CorruptRecord) as err:
        decode_record(raw, key=key)
    assert err.value.reason == reason


def test_a_record_under_its_own_key_decodes_and_keeps_its_text():
    raw = '{"v":1,"seq":5,"env":{"event_id":"a","event":"e","properties":{"x":1.50,"y":"é"},"created_at":7}}'
    record = decode_record(raw, key="a")
    assert record.env_json == '{"event_id":"a","event":"e","properties":{"x":1.50,"y":"é"},"created_at":7}'
    assert record.size_bytes == len(record.env_json.encode())
    meta = raw[:-1] + ',"meta":{"category":"ads"}}'
    assert decode_record(meta, key="a").category == "ads"
    # Another layout (key order) still decodes, re-encoding the envelope.
    other = json.dumps({"env": json.loads(raw)["env"], "seq": 5, "v": 1})
    assert decode_record(other, key="a").envelope == record.envelope


@pytest.mark.parametrize(("text", "expected"), [
    ('{"s":"\\ud800"}', '{"s":"\\ufffd"}'),
    ('{"s":"a\\udc00b"}', '{"s":"a\\ufffdb"}'),
    ('{"s":"\\ud83d\\ude00"}', '{"s":"\\ud83d\\ude00"}'),  # a pair, escaped: fine
    ('{"s":"\\\\ud800"}', '{"s":"\\\\ud800"}'),  # an escaped backslash, then text
    ('{"s":"\\\\\\ud800"}', '{"s":"\\\\\\ufffd"}'),  # \\ then a real escape
    ('{"s":"\ud800x"}', '{"s":"\ufffdx"}'),  # the code point itself
])
def test_lone_surrogates_are_replaced_by_u_fffd(text, expected):
    repaired, changed = repair_surrogates(text)
    assert repaired == expected
    assert changed is (text != expected)
    json.loads(repaired)


def test_a_stored_lone_surrogate_is_repaired_and_sendable():
    raw = '{"v":1,"seq":1,"env":{"event_id":"a","event":"x","properties":{"s":"\\ud800"},"created_at":1}}'
    record = decode_record(raw, key="a")
    assert record.envelope["properties"]["s"] == "\ufffd"
    record.env_json.encode("utf-8")  # no UnicodeEncodeError: it can go on the wire


def test_depth_check_is_exact_and_ignores_brackets_in_strings():
    assert not json_depth_exceeds("[" * 5 + "]" * 5, 5)
    assert json_depth_exceeds("[" * 6 + "]" * 6, 5)
    assert not json_depth_exceeds('["[[[[[[[[[["]', 2)


def test_dead_letters_are_checked_like_records():
    letter = json.dumps({**record_value("a", 1), "reason": "http_422", "status": 422, "attempts": 1, "at_ms": 5})
    assert decode_dead_letter(letter, key="a").reason == "http_422"
    with pytest.raises(CorruptRecord) as err:
        decode_dead_letter(letter, key="b")
    assert err.value.reason == "key_mismatch"


# -- restore: bad values are quarantined alone -----------------------------------

def test_restore_quarantines_each_bad_value_and_sends_the_rest():
    outbox = Outbox(Config.from_options({"apiKey": "k", "flushAt": 1}))
    good = [{"id": f"g{i}", "raw": json.dumps(record_value(f"g{i}", i + 1))} for i in range(3)]
    bad = [
        {"id": "copy", "raw": good[0]["raw"]},
        {"id": "v2", "raw": json.dumps({**record_value("v2", 9), "v": 2})},
        {"id": "big", "raw": "x" * 1_000_000},
        {"id": "seq", "raw": json.dumps(record_value("seq", 2**53 + 1))},
    ]
    cmds = outbox.handle(f.Restored(now_ms=T0, records=tuple(good + bad),
                                    quarantined_before_start={"not_json": 2}, repaired_before_start=1))
    quarantine = next(cmd for cmd in cmds if isinstance(cmd, c.Quarantine))
    assert {(e["id"], e["reason"]) for e in quarantine.entries} == {
        ("copy", "key_mismatch"), ("v2", "unknown_version"), ("big", "too_large"), ("seq", "unsafe_seq")}
    send = next(cmd for cmd in cmds if isinstance(cmd, c.Send))
    assert send.event_ids == ("g0", "g1", "g2")
    status = outbox.status()
    assert status["quarantined"] == {"key_mismatch": 1, "not_json": 2, "too_large": 1, "unknown_version": 1,
                                     "unsafe_seq": 1}
    assert status["repaired"] == 1 and status["queued"] == 3


# -- containment -----------------------------------------------------------------

def test_an_internal_error_is_contained_to_its_fact(monkeypatch):
    b = FakeBrowser(flushAt=100)
    first = b.record()
    original = b.outbox._on_flush_requested

    def explode(fact):
        raise RuntimeError("boom")

    monkeypatch.setattr(b.outbox, "_on_flush_requested", explode)
    b.outbox._handlers[f.FlushRequested] = explode
    cmds = b.outbox.handle_all([
        f.FlushRequested(now_ms=b.now, flush_id="f1"),
        f.Recorded(now_ms=b.now, record=record_value("later", b.seq + 10)),
    ])
    b.history.extend(cmds)
    for cmd in cmds:
        b.run(cmd)
    assert b.outbox.queued_ids == [first, "later"], "the fact after the failing one still applied"
    errors = [cmd.detail for cmd in cmds if isinstance(cmd, c.Emit) and cmd.name == "error"]
    assert [e["code"] for e in errors] == ["core_error"] and "boom" in errors[0]["message"]
    assert b.outbox.status()["coreErrors"] == 1
    b.outbox._handlers[f.FlushRequested] = original
    b.flush()
    b.settle()
    assert set(b.server.arrivals) == {first, "later"}


def test_a_lane_left_sending_by_an_error_is_freed(monkeypatch):
    b = FakeBrowser(flushAt=1)
    b.record()
    (batch_id,) = b.in_flight

    def explode(fact):
        b.outbox._events.finish(fact.batch_id)  # got as far as taking the batch
        raise KeyError("half-done")

    b.outbox._handlers[f.SendSucceeded] = explode
    b.outbox.handle(f.SendSucceeded(now_ms=b.now, batch_id=batch_id))
    assert b.outbox.state.value == "draining"
    b.outbox._handlers[f.SendSucceeded] = b.outbox._on_send_succeeded
    del b.in_flight[batch_id]
    b.advance(10)
    b.flush()
    b.settle()
    assert b.server.arrivals, "sending resumed"


def test_the_core_halts_after_too_many_internal_errors():
    outbox = Outbox(Config.from_options({"apiKey": "k"}))
    outbox.handle(f.Restored(now_ms=T0))

    def explode(fact):
        raise ValueError("again")

    outbox._handlers[f.WentOnline] = explode
    out = []
    for _ in range(60):
        out += outbox.handle(f.WentOnline(now_ms=T0))
    halts = [cmd for cmd in out if isinstance(cmd, c.Halt)]
    assert len(halts) == 1 and outbox.status()["coreErrors"] == 60


@pytest.mark.parametrize("reply", [
    "[" * 5000 + "]" * 5000, "not json", "x" * 2_000_000, '{"rejected": [[1], {"event_id": ["a"]}, 3]}',
    '{"rejected": {"event_id": "a"}}', '{"ok": true, "rejected": [{"event_id": "ev-00001", "code": ["x"]}]}',
    ["a", "list"], 42, None,
])
def test_hostile_replies_never_break_an_ack(reply):
    b = FakeBrowser(flushAt=1)
    event_id = b.record()
    (batch_id,) = b.in_flight
    del b.in_flight[batch_id]
    b.feed(f.SendSucceeded(now_ms=b.now, batch_id=batch_id, reply=reply))
    assert b.outbox.status()["coreErrors"] == 0
    assert event_id not in b.outbox.queued_ids  # acked (or rejected alone into a dead letter)


def test_bridge_refuses_deep_or_broken_json_without_raising():
    bridge = Bridge()
    json.loads(bridge.start(json.dumps({"apiKey": "k"})))
    json.loads(bridge.handle(json.dumps([{"type": "restored", "now_ms": T0}])))
    for text in ["[" * 100_000 + "]" * 100_000, "{", '[{"type": "recorded", "now_ms": NaN}]', "null",
                 '[{"type": "went_online", "now_ms": 1e400}]', '[{"type": "send_failed", "now_ms": 1, "jitter": "x"}]']:
        out = json.loads(bridge.handle(text))
        assert isinstance(out, list)
    assert not json.loads(bridge.start("[" * 100_000))["ok"]


# -- unknown consent: hold, never purge -------------------------------------------

def test_unknown_consent_holds_the_queue_until_the_page_decides():
    b = FakeBrowser(flushAt=1)
    b.consent_state = "granted"
    kept = [b.record(meta={"category": "analytics"}) for _ in range(2)]
    b.in_flight.clear()
    b.consent_state = "unknown"
    b.reload()
    assert b.in_flight == {} and b.outbox.queued_ids == kept and b.outbox.status()["consent"] == "unknown"
    held = b.record()  # the shim holds it in memory; the core queues it, unsent
    assert b.in_flight == {}
    flush = b.flush()
    assert b.flushes[flush] is False
    b.consent({"analytics": True})
    b.settle()
    assert set(b.server.arrivals) == {*kept, held}
    assert b.outbox.status()["dropped"] == {}


def test_unknown_consent_then_denied_purges_with_a_count():
    b = FakeBrowser(flushAt=1)
    b.consent_state = "unknown"
    b.reload()
    b.record()
    b.consent("denied")
    assert b.outbox.queued_ids == [] and b.outbox.status()["dropped"] == {"consent": 1}


# -- arbitrary facts -----------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20) | st.sampled_from(["b1", "b2", "flush", "retry", "granted", "denied", UUID]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_FACT_TYPES = [cls for cls in f.ALL_FACTS if cls is not f.Restored]
_FIELDS = {
    "record": _json | st.text(max_size=200), "reply": _json | st.text(max_size=100), "consent": _json,
    "records": st.lists(_json, max_size=3).map(tuple), "event_ids": st.lists(_json, max_size=3).map(tuple),
}


@st.composite
def _junk_fact(draw):
    cls = draw(st.sampled_from(_FACT_TYPES))
    values = {}
    for name in cls.__dataclass_fields__:
        if name == "now_ms":
            values[name] = T0 + draw(st.integers(0, 10_000))
        elif draw(st.booleans()):
            values[name] = draw(_FIELDS.get(name, _json))
    return cls(**values)


# Fewer examples inside Pyodide, where each is about ten times slower.
@settings(max_examples=300 if sys.platform != "emscripten" else 40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_junk_fact(), st.just("valid")), max_size=25))
def test_the_core_survives_arbitrary_facts_and_loses_no_valid_record(ops):
    b = FakeBrowser(flushAt=3)
    valid: list[str] = []
    for op in ops:
        if op == "valid":
            valid.append(b.record())
            continue
        commands = b.outbox.handle_all([op])  # only UsageError may escape, and none of these is misplaced
        b.history.extend(commands)
        for cmd in commands:
            if isinstance(cmd, c.SettleFlush) and cmd.flush_id not in b.flushes:
                continue  # answers a junk flush request
            b.run(cmd)
    assert b.outbox.status()["coreErrors"] == 0, "malformed input is refused, not an internal error"
    deleted = {i: cmd.reason for cmd in b.history if isinstance(cmd, c.Delete) for i in cmd.event_ids}
    quarantined = {e["id"] for cmd in b.history if isinstance(cmd, c.Quarantine) for e in cmd.entries}
    for event_id in valid:
        assert (event_id in b.outbox.queued_ids or event_id in b.dead_ids or event_id in deleted), event_id
        assert event_id not in quarantined
    dropped = sum(b.outbox.status()["dropped"].values())
    assert dropped >= sum(1 for i in valid if deleted.get(i, "acked") != "acked")
