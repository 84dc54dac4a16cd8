"""The bridge's JSON in and out, inside Pyodide (node and Chromium)."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["revu"])
def test_bridge_round_trip_in_pyodide(selenium):
    import json

    from revu import Bridge

    bridge = Bridge()
    assert json.loads(bridge.start(json.dumps({"apiKey": "k", "flushAt": 2})))["ok"] is True
    env = lambda i: {"event_id": f"e{i}", "event": "x", "properties": {"i": i}, "created_at": 1}  # noqa: E731
    out = json.loads(bridge.handle(json.dumps([
        {"type": "restored", "now_ms": 10},
        {"type": "recorded", "now_ms": 11, "record": {"v": 1, "seq": 1, "env": env(1)}},
        {"type": "recorded", "now_ms": 12, "record": {"v": 1, "seq": 2, "env": env(2)}},
    ])))
    send = [c for c in out if c["type"] == "send"]
    assert len(send) == 1 and send[0]["event_ids"] == ["e1", "e2"]
    assert json.loads(send[0]["body"]) == {"api_key": "k", "batch": [dict(env(1), sent_at=12), dict(env(2), sent_at=12)]}
    out = json.loads(bridge.handle(json.dumps([
        {"type": "send_failed", "now_ms": 20, "batch_id": send[0]["batch_id"], "status": 503, "jitter": 0.0},
    ])))
    assert {"type": "set_timer", "key": "retry", "at_ms": 1020} in out


@run_in_pyodide(packages=["revu"])
def test_bridge_refuses_garbage_without_raising(selenium):
    import json

    from revu import Bridge

    bridge = Bridge()
    assert json.loads(bridge.start("not json"))["ok"] is False
    out = json.loads(bridge.handle("[{\"type\": \"nope\", \"now_ms\": 1}]"))
    assert out[-1]["type"] == "emit" and out[-1]["detail"]["code"] == "bad_fact"
