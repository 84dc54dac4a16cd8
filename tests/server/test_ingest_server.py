"""The reference ingest server: wire contract, dedupe, CORS and fault switches."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from demo.ingest_server import IngestServer

ROOT = Path(__file__).resolve().parents[2]
PAGE_ORIGIN = "http://localhost:8000"


def assert_no_reply(exc: BaseException) -> None:
    """The failure is at connection level, not an HTTP status."""
    assert not isinstance(exc, urllib.error.HTTPError), f"got an HTTP reply: {exc}"


# ---- the happy path ---------------------------------------------------------


def test_valid_batch_is_stored_and_acked(ingest, post_events, make_envelope):
    batch = [make_envelope("signup", stream="auth", priority="high", keys={"messageId": "m1"}), make_envelope()]
    batch[0]["properties"] = {"plan": "pro", "seats": 3}

    reply = post_events(batch, headers={"Origin": PAGE_ORIGIN})

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json == {
        "ok": True, "accepted": [e["event_id"] for e in batch], "rejected": [], "accept_encoding": ["gzip"],
    }

    state = ingest.state()
    assert state["unique"] == 2
    assert state["duplicates"] == 0
    assert state["received_total"] == 2
    first = state["events"][0]
    assert first["event_id"] == batch[0]["event_id"]
    assert first["event"] == "signup"
    assert first["properties"] == {"plan": "pro", "seats": 3}
    assert first["created_at"] == batch[0]["created_at"]
    assert first["sent_at"] == batch[0]["sent_at"]
    assert first["stream"] == "auth"
    assert first["envelope"] == batch[0]
    assert first["api_key"] == "test-key"
    assert first["receipts"] == 1
    assert abs(first["received_at_ms"] - time.time() * 1000) < 10_000
    assert [e["event_id"] for e in state["events"]] == [e["event_id"] for e in batch]

    (req,) = state["requests"]
    assert req["seq"] == 1
    assert req["status"] == 200
    assert req["outcome"] == "ok"
    assert req["n"] == 2
    assert req["event_ids"] == [e["event_id"] for e in batch]
    assert req["api_key"] == "test-key"
    assert req["content_type"] == "application/json"
    assert req["origin"] == PAGE_ORIGIN
    assert req["body_keys"] == ["api_key", "batch"]
    assert req["bytes"] == len(json.dumps({"api_key": "test-key", "batch": batch}).encode())


def test_state_endpoint_matches_accessor(ingest, post_events, call, make_envelope):
    post_events([make_envelope() for _ in range(3)])
    over_http = call("GET", ingest.url + "/__control/state")
    assert over_http.status == 200
    assert over_http.json == ingest.state()
    assert set(over_http.json) >= {"events", "unique", "duplicates", "received_total", "requests", "faults"}


def test_state_tail_limits_lists_but_not_counters(ingest, post_events, make_envelope):
    batches = [[make_envelope(n=i)] for i in range(5)]
    for batch in batches:
        post_events(batch)
    state = ingest.state(tail=2)
    assert state["unique"] == 5
    assert state["requests_total"] == 5
    assert [e["event_id"] for e in state["events"]] == [b[0]["event_id"] for b in batches[-2:]]
    assert [r["seq"] for r in state["requests"]] == [4, 5]


def test_unknown_envelope_fields_are_kept_but_ignored(ingest, post_events, make_envelope):
    env = make_envelope(future_field={"x": 1}, pii=True)
    assert post_events([env]).json["accepted"] == [env["event_id"]]
    assert ingest.state()["events"][0]["envelope"]["future_field"] == {"x": 1}


def test_empty_batch_is_ok(ingest, post_events):
    reply = post_events([])
    assert reply.status == 200
    assert reply.json == {"ok": True, "accepted": [], "rejected": [], "accept_encoding": ["gzip"]}


# ---- dedupe -----------------------------------------------------------------


def test_resend_is_a_noop_success_counted_as_duplicate(ingest, post_events, make_envelope):
    batch = [make_envelope("a"), make_envelope("b")]
    assert post_events(batch).status == 200

    again = post_events(batch + [make_envelope("c")])

    assert again.status == 200
    assert again.json["accepted"] == [e["event_id"] for e in batch] + [again.json["accepted"][2]]
    state = ingest.state()
    assert state["unique"] == 3
    assert state["duplicates"] == 2
    assert state["received_total"] == 5
    receipts = {e["event"]: e["receipts"] for e in state["events"]}
    assert receipts == {"a": 2, "b": 2, "c": 1}


def test_duplicate_within_one_batch(ingest, post_events, make_envelope):
    env = make_envelope()
    reply = post_events([env, dict(env, properties={"changed": True})])
    assert reply.json["accepted"] == [env["event_id"], env["event_id"]]
    state = ingest.state()
    assert state["unique"] == 1
    assert state["duplicates"] == 1
    # First receipt wins.
    assert state["events"][0]["properties"] == env["properties"]


def test_first_receipt_order_is_kept_on_duplicates(ingest, post_events, make_envelope):
    first, second = make_envelope("first"), make_envelope("second")
    post_events([first])
    post_events([second])
    post_events([first])
    assert [e["event"] for e in ingest.state()["events"]] == ["first", "second"]


# ---- malformed bodies -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error_fragment"),
    [
        (b"", "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b'{"api_key": "k", "batch": [', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"api_key": "k", "batch": [{"event_id": "x", "event": "e", "properties": {"v": NaN}}]}', "not valid JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b'{"batch": []}', "api_key is missing"),
        (b'{"api_key": "", "batch": []}', "api_key is empty"),
        (b'{"api_key": 42, "batch": []}', "api_key must be a string"),
        (b'{"api_key": null, "batch": []}', "api_key must be a string"),
        (b'{"api_key": "k"}', "batch is missing"),
        (b'{"api_key": "k", "batch": {"event_id": "x"}}', "batch must be a list"),
        (b'{"api_key": "k", "batch": "x"}', "batch must be a list"),
    ],
)
def test_malformed_body_is_400_and_nothing_stored(ingest, post_events, body, error_fragment):
    reply = post_events(body=body)

    assert reply.status == 400
    assert reply.json["ok"] is False
    assert reply.json["code"] == "bad_request"
    assert error_fragment in reply.json["error"]
    state = ingest.state()
    assert state["unique"] == 0
    assert state["events"] == []
    assert state["requests"][-1]["outcome"] == "bad_request"
    assert state["requests"][-1]["status"] == 400


def test_bad_request_with_valid_envelopes_stores_nothing(ingest, post_events, make_envelope):
    reply = post_events(body={"api_key": "", "batch": [make_envelope()]})
    assert reply.status == 400
    assert ingest.state()["unique"] == 0
    # The request log still shows what was in the body.
    assert len(ingest.state()["requests"][0]["event_ids"]) == 1


def test_invalid_envelopes_are_rejected_one_by_one(ingest, post_events, make_envelope):
    good1, good2 = make_envelope("ok1"), make_envelope("ok2")
    no_id = make_envelope("no_id")
    del no_id["event_id"]
    no_event = make_envelope()
    del no_event["event"]
    numeric_id = make_envelope(event_id=12345)
    empty_id = make_envelope(event_id="")
    batch = [good1, no_id, no_event, "not an object", numeric_id, empty_id, good2]

    reply = post_events(batch)

    assert reply.status == 200
    assert reply.json["ok"] is True
    assert reply.json["accepted"] == [good1["event_id"], good2["event_id"]]
    assert reply.json["rejected"] == [
        {"event_id": None, "code": "invalid_envelope"},
        {"event_id": no_event["event_id"], "code": "invalid_envelope"},
        {"event_id": None, "code": "invalid_envelope"},
        {"event_id": 12345, "code": "invalid_envelope"},
        {"event_id": "", "code": "invalid_envelope"},
    ]
    state = ingest.state()
    assert [e["event"] for e in state["events"]] == ["ok1", "ok2"]
    assert state["requests"][0]["n"] == 7


def test_text_plain_body_is_accepted(ingest, post_events, make_envelope):
    env = make_envelope()
    reply = post_events([env], headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": PAGE_ORIGIN})
    assert reply.status == 200
    assert reply.json["accepted"] == [env["event_id"]]
    assert ingest.state()["requests"][0]["content_type"] == "text/plain;charset=UTF-8"
    assert ingest.state()["unique"] == 1


def test_chunked_body_is_accepted(ingest, make_envelope):
    env = make_envelope()
    body = json.dumps({"api_key": "k", "batch": [env]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/v1/behavior/events",
            body=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["accepted"] == [env["event_id"]]
    finally:
        conn.close()


def test_oversized_body_is_413(make_server):
    with make_server(max_body_bytes=1000) as server:
        body = json.dumps({"api_key": "k", "batch": [{"event_id": "x", "event": "e", "p": "y" * 2000}]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("POST", "/v1/behavior/events", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 413
            assert json.loads(response.read())["code"] == "too_large"
        finally:
            conn.close()
        assert server.state()["unique"] == 0


# ---- CORS -------------------------------------------------------------------


def test_preflight_echoes_origin_and_requested_headers(ingest, call):
    reply = call(
        "OPTIONS",
        ingest.url + "/v1/behavior/events",
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert reply.status == 204
    assert reply.raw == b""
    h = reply.headers
    assert h["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in h["Vary"]
    assert h["Access-Control-Allow-Headers"] == "content-type"
    assert "POST" in h["Access-Control-Allow-Methods"] and "OPTIONS" in h["Access-Control-Allow-Methods"]
    assert h["Access-Control-Max-Age"] == "600"
    assert h["Access-Control-Allow-Private-Network"] == "true"
    assert ingest.state()["requests"] == []  # preflights are not event requests


def test_preflight_without_requested_headers_allows_defaults(ingest, call):
    reply = call("OPTIONS", ingest.url + "/v1/mutations", headers={"Origin": PAGE_ORIGIN})
    assert reply.status == 204
    allowed = {h.strip().lower() for h in reply.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "idempotency-key"} <= allowed


def test_cors_headers_on_success_errors_and_control(ingest, post_events, call, make_envelope):
    replies = [
        post_events([make_envelope()], headers={"Origin": PAGE_ORIGIN}),
        post_events(body=b"nope", headers={"Origin": PAGE_ORIGIN}),
        call("GET", ingest.url + "/__control/state", headers={"Origin": PAGE_ORIGIN}),
        call("POST", ingest.url + "/__control/faults", {}, headers={"Origin": PAGE_ORIGIN}),
        call("GET", ingest.url + "/no/such/path", headers={"Origin": PAGE_ORIGIN}),
    ]
    assert [r.status for r in replies] == [200, 400, 200, 200, 404]
    for reply in replies:
        assert reply.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        assert reply.headers["Access-Control-Allow-Credentials"] == "true"
        assert reply.headers["Vary"] == "Origin"
        assert "Retry-After" in reply.headers["Access-Control-Expose-Headers"]


def test_no_origin_gets_star_without_credentials(ingest, post_events, make_envelope):
    reply = post_events([make_envelope()])
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert reply.headers["Access-Control-Allow-Credentials"] is None


def test_retry_after_is_sent_and_exposed(ingest, post_events, make_envelope):
    ingest.set_faults({"script": [{"status": 429, "retry_after": "7"}]})
    reply = post_events([make_envelope()], headers={"Origin": PAGE_ORIGIN})
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "7"
    exposed = [h.strip() for h in reply.headers["Access-Control-Expose-Headers"].split(",")]
    assert "Retry-After" in exposed
    assert reply.json == {"ok": False, "code": "fault_429"}


# ---- fault script -----------------------------------------------------------


def test_fault_script_is_consumed_in_order(ingest, post_events, call, make_envelope):
    faults = call(
        "POST",
        ingest.url + "/__control/faults",
        {"script": [{"status": 503}, {"status": 503}, {"status": 429, "retry_after": "1"}]},
    )
    assert faults.status == 200
    assert [s["status"] for s in faults.json["script"]] == [503, 503, 429]
    assert faults.json["script"][2]["retry_after"] == "1"
    assert faults.json["script"][0]["store"] is False

    batch = [make_envelope(), make_envelope()]
    replies = [post_events(batch) for _ in range(4)]

    assert [r.status for r in replies] == [503, 503, 429, 200]
    assert [r.json.get("code") for r in replies[:3]] == ["fault_503", "fault_503", "fault_429"]
    assert [r.headers["Retry-After"] for r in replies] == [None, None, "1", None]
    assert replies[3].json["accepted"] == [e["event_id"] for e in batch]
    state = ingest.state()
    assert state["unique"] == 2
    assert state["duplicates"] == 0  # faulted attempts stored nothing
    assert state["faults"]["script"] == []
    assert [r["outcome"] for r in state["requests"]] == ["fault", "fault", "fault", "ok"]
    assert [r["status"] for r in state["requests"]] == [503, 503, 429, 200]
    assert all(r["event_ids"] == [e["event_id"] for e in batch] for r in state["requests"])
    assert state["envelopes_seen"] == 8


def test_fault_with_store_true_stores_then_resend_is_duplicate(ingest, post_events, make_envelope):
    ingest.set_faults({"script": [{"status": 502, "store": True}]})
    batch = [make_envelope()]
    assert post_events(batch).status == 502
    assert ingest.state()["unique"] == 1
    assert post_events(batch).status == 200
    assert ingest.state()["duplicates"] == 1


def test_2xx_step_with_store_false_acks_without_storing(ingest, post_events, make_envelope):
    ingest.set_faults({"script": [{"status": 202, "store": False}]})
    env = make_envelope()
    reply = post_events([env])
    assert reply.status == 202
    assert reply.json["accepted"] == [env["event_id"]]
    assert ingest.state()["unique"] == 0


def test_script_step_delay(ingest, post_events, make_envelope):
    ingest.set_faults({"script": [{"status": 200, "delay_ms": 300}]})
    t0 = time.monotonic()
    assert post_events([make_envelope()]).status == 200
    assert time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    assert post_events([make_envelope()]).status == 200
    assert time.monotonic() - t0 < 0.3


def test_default_delay_applies_to_event_requests_only(ingest, post_events, call, make_envelope):
    ingest.set_faults({"delay_ms": 300})
    t0 = time.monotonic()
    call("GET", ingest.url + "/__control/state")
    call("OPTIONS", ingest.url + "/v1/behavior/events", headers={"Origin": PAGE_ORIGIN})
    assert time.monotonic() - t0 < 0.3
    t0 = time.monotonic()
    assert post_events([make_envelope()]).status == 200
    assert time.monotonic() - t0 >= 0.3


def test_in_flight_request_is_logged_as_pending(ingest, post_events, make_envelope):
    ingest.set_faults({"delay_ms": 500})
    worker = threading.Thread(target=post_events, args=([make_envelope()],))
    worker.start()
    try:
        state = ingest.wait_until(lambda s: s["requests_total"] == 1, timeout_s=2)
        assert state["requests"][0]["outcome"] == "pending"
        assert state["requests"][0]["status"] is None
    finally:
        worker.join()
    assert ingest.state()["requests"][0]["outcome"] == "ok"


def test_drop_reply_stores_then_resend_is_duplicate(ingest, post_events, make_envelope):
    ingest.set_faults({"script": [{"drop_reply": True}]})
    batch = [make_envelope(), make_envelope()]

    with pytest.raises(OSError) as excinfo:
        post_events(batch)
    assert_no_reply(excinfo.value)

    state = ingest.state()
    assert state["unique"] == 2
    assert state["requests"][0]["outcome"] == "dropped"
    assert state["requests"][0]["status"] is None

    resend = post_events(batch)
    assert resend.status == 200
    assert resend.json["accepted"] == [e["event_id"] for e in batch]
    state = ingest.state()
    assert state["unique"] == 2
    assert state["duplicates"] == 2


def test_drop_reply_on_keep_alive_connection_closes_it(ingest, make_envelope):
    """A raw HTTP/1.1 client sees EOF instead of a status line."""
    ingest.set_faults({"script": [{"status": 200}, {"drop_reply": True, "store": False}]})
    body = json.dumps({"api_key": "k", "batch": [make_envelope()]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=5)
    try:
        conn.request("POST", "/v1/behavior/events", body=body, headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        assert first.getheader("Connection") != "close"
        conn.request("POST", "/v1/behavior/events", body=body, headers={"Content-Type": "application/json"})
        with pytest.raises(http.client.RemoteDisconnected):
            conn.getresponse()
    finally:
        conn.close()
    assert ingest.state()["unique"] == 1


def test_offline_closes_connection_and_stores_nothing(ingest, post_events, call, make_envelope):
    faults = call("POST", ingest.url + "/__control/faults", {"offline": True})
    assert faults.json["offline"] is True
    ingest.set_faults({"script": [{"status": 503}]})
    batch = [make_envelope()]

    with pytest.raises(OSError) as excinfo:
        post_events(batch)
    assert_no_reply(excinfo.value)

    # Preflights and control endpoints still answer while offline.
    preflight = call("OPTIONS", ingest.url + "/v1/behavior/events", headers={"Origin": PAGE_ORIGIN})
    assert preflight.status == 204
    state = call("GET", ingest.url + "/__control/state").json
    assert state["unique"] == 0
    assert state["requests"][0]["outcome"] == "offline"
    assert state["requests"][0]["event_ids"] == [batch[0]["event_id"]]
    assert len(state["faults"]["script"]) == 1  # offline requests consume no step

    ingest.set_faults({"offline": False})
    assert post_events(batch).status == 503
    assert post_events(batch).status == 200
    assert ingest.state()["unique"] == 1


def test_poison_event_fails_whole_batch_with_422(ingest, post_events, make_envelope):
    ingest.set_faults({"poison_events": ["bad_event"]})
    good, bad = make_envelope("good"), make_envelope("bad_event")

    reply = post_events([good, bad])

    assert reply.status == 422
    assert reply.json == {"ok": False, "code": "poison"}
    assert ingest.state()["unique"] == 0
    assert ingest.state()["requests"][0]["outcome"] == "poison"

    # The client splits the batch: the clean half goes through.
    assert post_events([good]).status == 200
    assert post_events([bad]).status == 422
    assert [e["event"] for e in ingest.state()["events"]] == ["good"]


def test_reject_ids_are_rejected_and_not_stored(ingest, post_events, make_envelope):
    keep, drop = make_envelope("keep"), make_envelope("drop")
    ingest.set_faults({"script": [{"status": 200, "reject_ids": [drop["event_id"]]}]})

    reply = post_events([keep, drop])

    assert reply.status == 200
    assert reply.json["accepted"] == [keep["event_id"]]
    assert reply.json["rejected"] == [{"event_id": drop["event_id"], "code": "rejected_by_test"}]
    assert [e["event"] for e in ingest.state()["events"]] == ["keep"]


def test_fault_updates_are_partial_and_validated(ingest, call):
    ingest.set_faults({"offline": True, "poison_events": ["x"], "delay_ms": 5})
    result = call("POST", ingest.url + "/__control/faults", {"delay_ms": 0})
    assert result.json == {
        "script": [], "offline": True, "poison_events": ["x"], "delay_ms": 0, "keep_alive": True,
        "mutation_script": [], "mutation_offline": False, "mutation_delay_ms": 0,
    }
    assert call("GET", ingest.url + "/__control/faults").json == result.json

    for bad in (
        {"ofline": True},
        {"offline": "yes"},
        {"script": [{"status": 99}]},
        {"script": [{"statuss": 503}]},
        {"script": {"status": 503}},
        {"delay_ms": -1},
        {"poison_events": "x"},
        [],
    ):
        reply = call("POST", ingest.url + "/__control/faults", bad)
        assert reply.status == 400, bad
        assert reply.json["code"] == "bad_request"
        with pytest.raises(ValueError):
            ingest.set_faults(bad)
    assert ingest.faults() == result.json  # nothing changed by the bad updates


def test_keep_alive_false_closes_every_connection(ingest, make_envelope):
    ingest.set_faults({"keep_alive": False})
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=5)
    try:
        conn.request("GET", "/__control/state")
        response = conn.getresponse()
        response.read()
        assert response.getheader("Connection") == "close"
    finally:
        conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(ingest, make_envelope):
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=5)
    try:
        conn.connect()
        sock = conn.sock
        for i in range(3):
            body = json.dumps({"api_key": "k", "batch": [make_envelope(n=i)]})
            conn.request("OPTIONS", "/v1/behavior/events", headers={"Origin": PAGE_ORIGIN})
            preflight = conn.getresponse()
            assert preflight.read() == b""
            assert preflight.status == 204
            conn.request("POST", "/v1/behavior/events", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["ok"] is True
            conn.request("GET", "/nowhere", body=b"ignored body", headers={"Content-Type": "text/plain"})
            missing = conn.getresponse()
            missing.read()
            assert missing.status == 404
            assert conn.sock is sock  # same TCP connection throughout
    finally:
        conn.close()
    assert ingest.state()["unique"] == 3


def test_reset_clears_events_counters_log_and_faults(ingest, post_events, call, make_envelope):
    env = make_envelope()
    post_events([env])
    post_events([env])
    ingest.set_faults({"offline": True, "script": [{"status": 500}], "poison_events": ["p"], "delay_ms": 1})

    reply = call("POST", ingest.url + "/__control/reset")

    assert reply.status == 200
    state = ingest.state()
    assert state["events"] == [] and state["unique"] == 0
    assert state["duplicates"] == 0 and state["received_total"] == 0
    assert state["requests"] == [] and state["envelopes_seen"] == 0
    assert state["faults"] == {
        "script": [], "offline": False, "poison_events": [], "delay_ms": 0, "keep_alive": True,
        "mutation_script": [], "mutation_offline": False, "mutation_delay_ms": 0,
    }
    # The same event is new again after a reset.
    assert post_events([env]).status == 200
    assert ingest.state()["duplicates"] == 0
    assert ingest.state()["requests"][0]["seq"] == 1


def test_python_reset_accessor(ingest, post_events, make_envelope):
    post_events([make_envelope()])
    ingest.reset()
    assert ingest.state()["unique"] == 0


# ---- routing ----------------------------------------------------------------


def test_routing_errors_are_json(ingest, call):
    wrong_method = call("GET", ingest.url + "/v1/behavior/events")
    assert wrong_method.status == 405
    assert "POST" in wrong_method.headers["Allow"]
    assert wrong_method.json["code"] == "method_not_allowed"
    reserved = call("POST", ingest.url + "/v1/mutations", {"x": 1}, headers={"Idempotency-Key": "abc"})
    assert reserved.status == 501
    assert reserved.json["code"] == "not_implemented"
    assert call("GET", ingest.url + "/healthz").json["ok"] is True


# ---- concurrency, persistence, helpers --------------------------------------


def test_concurrent_posts_with_overlapping_events(ingest, post_events, make_envelope):
    shared = [make_envelope("shared") for _ in range(5)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                reply = post_events(shared + [make_envelope("own", worker=n, i=i)])
                assert reply.status == 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    state = ingest.state()
    assert state["unique"] == 5 + 8 * 5
    assert state["duplicates"] == 8 * 5 * 5 - 5
    assert state["received_total"] == state["unique"] + state["duplicates"]
    assert sorted(r["seq"] for r in state["requests"]) == list(range(1, 41))


def test_database_persists_across_restarts(db_url, call, make_envelope):
    first, second = make_envelope("first"), make_envelope("second")

    with IngestServer(db_url=db_url) as server:
        url = server.url
        assert call("POST", url + "/v1/behavior/events", {"api_key": "k", "batch": [first]}).status == 200
        assert call("POST", url + "/v1/behavior/events", {"api_key": "k", "batch": [first]}).status == 200
    with pytest.raises(OSError):
        call("GET", url + "/healthz", timeout=1)

    with IngestServer(db_url=db_url) as server:
        state = server.state()
        assert [e["event"] for e in state["events"]] == ["first"]
        assert state["duplicates"] == 1
        reply = call("POST", server.url + "/v1/behavior/events", {"api_key": "k", "batch": [first, second]})
        assert reply.status == 200
        state = server.state()
        assert [e["event"] for e in state["events"]] == ["first", "second"]
        assert state["duplicates"] == 2
        # The request log is per process; sequence numbers keep counting.
        assert [r["seq"] for r in state["requests"]] == [3]
        assert state["events"][1]["request_seq"] == 3

    with IngestServer(db_url=db_url) as server:
        assert server.state()["unique"] == 2


def test_wait_until(ingest, post_events, make_envelope):
    threading.Timer(0.2, post_events, args=([make_envelope()],)).start()
    state = ingest.wait_until(lambda s: s["unique"] >= 1, timeout_s=5)
    assert state["unique"] == 1
    with pytest.raises(TimeoutError):
        ingest.wait_until(lambda s: s["unique"] >= 2, timeout_s=0.2)


def test_stop_is_idempotent_and_refuses_restart(make_server):
    server = make_server().start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        server.start()


def test_cli_serves_until_interrupted(tmp_path, call):
    db = tmp_path / "cli.sqlite3"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "demo" / "ingest_server.py"), "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line + proc.stderr.read() if proc.poll() is not None else line
        reply = call(
            "POST", f"http://127.0.0.1:{port}/v1/behavior/events", {"api_key": "k", "batch": [{"event_id": "e1", "event": "x"}]}
        )
        assert reply.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert db.exists()
    assert proc.stderr.read() == ""  # quiet: no per-request logging by default
