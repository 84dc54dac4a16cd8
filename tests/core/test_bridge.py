"""The JSON surface the shim calls."""

import json

from helpers import T0, record_value
from revu import Bridge
from revu._bridge import command_to_json, fact_from_json, snake_case
from revu import _commands as c
from revu import _facts as f


def _started(**options):
    bridge = Bridge()
    reply = json.loads(bridge.start(json.dumps({"apiKey": "k", **options})))
    assert reply["ok"] is True
    return bridge


def test_start_reports_checked_options_or_a_clear_error():
    reply = json.loads(Bridge().start(json.dumps({"apiKey": "k", "flushAt": 3})))
    assert reply["options"]["flushAt"] == 3 and reply["options"]["maxQueue"] == 1000
    assert json.loads(Bridge().start(json.dumps({"apiKey": "k", "flushAt": -1}))) == {
        "ok": False, "error": "flushAt must be a positive integer"}
    assert json.loads(Bridge().start("{oops"))["ok"] is False


def test_type_names_are_snake_case_class_names():
    assert snake_case("SendFailed") == "send_failed"
    assert command_to_json(c.SetTimer("retry", 5)) == {"type": "set_timer", "key": "retry", "at_ms": 5}
    fact = fact_from_json({"type": "restored", "now_ms": 1.0, "records": [], "durable": False})
    assert fact == f.Restored(now_ms=1, records=(), durable=False)


def test_round_trip_through_json():
    bridge = _started(flushAt=1)
    out = json.loads(bridge.handle(json.dumps([
        {"type": "restored", "now_ms": T0},
        {"type": "recorded", "now_ms": T0, "record": record_value("a", 1), "durable": True},
    ])))
    types = [cmd["type"] for cmd in out]
    assert types.count("send") == 1 and "publish_rules" in types and types[-1] == "report_status"
    send = next(cmd for cmd in out if cmd["type"] == "send")
    assert send["event_ids"] == ["a"] and json.loads(send["body"])["batch"][0]["event_id"] == "a"
    out = json.loads(bridge.handle(json.dumps([
        {"type": "send_succeeded", "now_ms": T0 + 5, "batch_id": send["batch_id"], "status": 200,
         "reply": {"ok": True, "accepted": ["a"], "rejected": []}},
    ])))
    assert {"type": "delete", "event_ids": ["a"], "reason": "acked"} in out
    assert {"type": "emit", "name": "outbox:flushed", "detail": {"acked": 1}} in out


def test_a_bad_fact_is_reported_and_the_others_still_apply():
    bridge = _started()
    out = json.loads(bridge.handle(json.dumps([
        {"type": "restored", "now_ms": T0},
        {"type": "no_such_fact", "now_ms": T0},
        {"type": "recorded", "now_ms": "later"},
        {"type": "recorded", "now_ms": T0, "record": record_value("a", 1), "bogus": 1},
        {"type": "flush_requested", "now_ms": T0, "flush_id": "f1"},
    ])))
    errors = [cmd for cmd in out if cmd["type"] == "emit" and cmd["name"] == "error"]
    assert len(errors) == 3
    assert all(e["detail"]["code"] == "bad_fact" for e in errors)
    assert {"type": "settle_flush", "flush_id": "f1", "ok": True} in out


def test_garbage_never_raises():
    bridge = Bridge()
    for payload in ["", "null", "{}", "[1,2]", "[{}]"]:
        out = json.loads(bridge.handle(payload))
        assert out and out[-1]["type"] == "emit" and out[-1]["name"] == "error"


def test_recorded_accepts_the_stored_string_as_is():
    bridge = _started(flushAt=1)
    out = json.loads(bridge.handle(json.dumps([
        {"type": "restored", "now_ms": T0},
        {"type": "recorded", "now_ms": T0, "record": json.dumps(record_value("a", 1))},
        {"type": "recorded", "now_ms": T0, "record": '{"v":1,"seq":2,"env":{"event_id":"b"'},
    ])))
    send = next(cmd for cmd in out if cmd["type"] == "send")
    assert send["event_ids"] == ["a"]
    assert {"type": "delete", "event_ids": [], "reason": "invalid"} not in out
    assert any(cmd["type"] == "emit" and cmd["name"] == "error" and cmd["detail"]["code"] == "invalid_record" for cmd in out)
