"""The idempotent chat endpoint (POST /v1/chat/<room>/messages) and its faults.

Exactly-once effects per Idempotency-Key across retries, ack loss, in-flight
requests whose client went away, concurrency and restarts; mutation faults
kept apart from event faults.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import pytest

from demo.ingest_server import IngestServer

PAGE_ORIGIN = "http://localhost:8000"


@pytest.fixture
def send(ingest, call) -> Callable[..., Any]:
    """send(room, body, key=<fresh>, headers=None, timeout=5.0) -> Reply.

    ``key=None`` sends no Idempotency-Key header.
    """

    def post(room: str = "lobby", body: Any = None, key: str | None = "", headers=None, timeout: float = 5.0):
        all_headers = dict(headers or {})
        if key == "":
            key = str(uuid.uuid4())
        if key is not None:
            all_headers["Idempotency-Key"] = key
        if body is None:
            body = {"text": "hello"}
        return call("POST", ingest.messages_url(room), body, all_headers, timeout)

    return post


def mutation_requests(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in state["requests"] if r["kind"] == "mutation"]


def assert_no_reply(exc: BaseException) -> None:
    assert not isinstance(exc, urllib.error.HTTPError), f"got an HTTP reply: {exc}"


# ---- exactly once -----------------------------------------------------------


def test_first_request_applies_and_retries_replay(ingest, send):
    first = send("lobby", {"text": "hi", "author": "ann"}, key="k-1", headers={"Origin": PAGE_ORIGIN})

    assert first.status == 200
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert first.json == {"ok": True, "emitId": "k-1", "message_id": 1, "replayed": False}

    again = [send("lobby", {"text": "hi", "author": "someone else"}, key="k-1") for _ in range(3)]
    for reply in again:
        assert reply.status == 200
        assert reply.json == {"ok": True, "emitId": "k-1", "message_id": 1, "replayed": True}

    state = ingest.state()
    (message,) = state["messages"]
    assert message["message_id"] == 1
    assert message["room"] == "lobby"
    assert message["text"] == "hi"
    assert message["idempotency_key"] == "k-1"
    assert message["seq_in_room"] == 1
    assert abs(message["at_ms"] - time.time() * 1000) < 10_000
    assert state["mutation_replays"] == 3
    # Mutations are not events.
    assert state["unique"] == 0 and state["received_total"] == 0 and state["envelopes_seen"] == 0

    logged = state["requests"]
    assert [r["kind"] for r in logged] == ["mutation"] * 4
    assert [r["outcome"] for r in logged] == ["applied", "replayed", "replayed", "replayed"]
    assert [r["effect"] for r in logged] == ["applied", "replayed", "replayed", "replayed"]
    assert [r["status"] for r in logged] == [200] * 4
    assert [r["seq"] for r in logged] == [1, 2, 3, 4]
    assert all(r["idempotency_key"] == "k-1" and r["room"] == "lobby" and r["message_id"] == 1 for r in logged)
    assert logged[0]["origin"] == PAGE_ORIGIN
    assert logged[0]["body_keys"] == ["author", "text"]
    assert logged[0]["n"] == 0 and logged[0]["event_ids"] == []
    assert message["request_seq"] == 1


def test_state_endpoint_lists_messages_and_replays(ingest, send, call):
    send("lobby", {"text": "one"}, key="a")
    send("lobby", {"text": "one"}, key="a")
    over_http = call("GET", ingest.url + "/__control/state").json
    assert over_http == ingest.state()
    assert [m["text"] for m in over_http["messages"]] == ["one"]
    assert over_http["mutation_replays"] == 1


def test_event_requests_are_logged_with_kind_events(ingest, post_events, send, make_envelope):
    post_events([make_envelope()])
    send()
    kinds = [(r["kind"], r["idempotency_key"] is None) for r in ingest.state()["requests"]]
    assert kinds == [("events", True), ("mutation", False)]


def test_ack_loss_then_retry_is_one_message_and_a_replay(ingest, send):
    ingest.set_faults({"mutation_script": [{"drop_reply": True}]})

    with pytest.raises(OSError) as excinfo:
        send("lobby", {"text": "once"}, key="lost-ack")
    assert_no_reply(excinfo.value)

    state = ingest.state()
    assert [m["text"] for m in state["messages"]] == ["once"]
    (dropped,) = state["requests"]
    assert dropped["outcome"] == "dropped" and dropped["status"] is None
    assert dropped["effect"] == "applied" and dropped["message_id"] == 1

    retry = send("lobby", {"text": "once"}, key="lost-ack")
    assert retry.status == 200
    assert retry.json == {"ok": True, "emitId": "lost-ack", "message_id": 1, "replayed": True}
    state = ingest.state()
    assert len(state["messages"]) == 1
    assert state["mutation_replays"] == 1


def test_drop_reply_without_store_applies_nothing(ingest, send):
    ingest.set_faults({"mutation_script": [{"drop_reply": True, "store": False}]})
    with pytest.raises(OSError):
        send(key="k")
    assert ingest.state()["messages"] == []
    assert ingest.state()["requests"][0]["effect"] is None
    retry = send(key="k")
    assert retry.json == {"ok": True, "emitId": "k", "message_id": 1, "replayed": False}


def test_in_flight_request_applies_after_the_client_went_away(ingest, send):
    """The page is gone before the answer (a keepalive request still arrives):
    the delayed request applies once, and a later retry is a replay."""
    ingest.set_faults({"mutation_script": [{"delay_ms": 400}]})
    body = json.dumps({"text": "sent while leaving"}).encode()
    head = (
        f"POST /v1/chat/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: leaving-1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", ingest.port), timeout=5) as sock:
        sock.sendall(head + body)
        state = ingest.wait_until(lambda s: s["requests_total"] == 1, timeout_s=2)
        assert state["requests"][0]["outcome"] == "pending"
        assert state["messages"] == []  # the delay comes before applying
    # Socket closed: nobody will read the reply.

    state = ingest.wait_until(lambda s: s["requests"][0]["outcome"] != "pending", timeout_s=5)
    assert [m["text"] for m in state["messages"]] == ["sent while leaving"]

    retry = send("lobby", {"text": "sent while leaving"}, key="leaving-1")
    assert retry.json == {"ok": True, "emitId": "leaving-1", "message_id": 1, "replayed": True}
    assert len(ingest.state()["messages"]) == 1


def test_concurrent_requests_with_one_key_apply_once(ingest, send):
    # The delay lines all ten up before check-and-apply.
    ingest.set_faults({"mutation_delay_ms": 200})
    barrier = threading.Barrier(10)
    replies: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            replies.append(send("lobby", {"text": "race"}, key="same-key"))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert errors == []
    assert len(replies) == 10
    assert all(r.status == 200 for r in replies)
    assert sorted(r.json["replayed"] for r in replies) == [False] + [True] * 9
    assert {r.json["message_id"] for r in replies} == {1}
    state = ingest.state()
    assert len(state["messages"]) == 1
    assert state["mutation_replays"] == 9


def test_concurrent_requests_with_distinct_keys_get_distinct_ids(ingest, send):
    replies: list[Any] = []
    threads = [
        threading.Thread(target=lambda i=i: replies.append(send("lobby", {"text": f"m{i}"}, key=f"k{i}")))
        for i in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    messages = ingest.state()["messages"]
    assert sorted(r.json["message_id"] for r in replies) == list(range(1, 11))
    assert [m["message_id"] for m in messages] == list(range(1, 11))
    assert sorted(m["seq_in_room"] for m in messages) == list(range(1, 11))


def test_messages_are_ordered_with_a_sequence_per_room(ingest, send):
    plan = [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")]
    for i, (room, text) in enumerate(plan):
        reply = send(room, {"text": text}, key=f"order-{i}")
        assert reply.json["message_id"] == i + 1
    messages = ingest.state()["messages"]
    assert [(m["message_id"], m["room"], m["text"], m["seq_in_room"]) for m in messages] == [
        (1, "a", "a1", 1),
        (2, "b", "b1", 1),
        (3, "a", "a2", 2),
        (4, "a", "a3", 3),
        (5, "b", "b2", 2),
    ]
    assert ingest.state(tail=2)["messages"] == messages[-2:]
    assert ingest.state(tail=0)["messages"] == []


# ---- refusals ---------------------------------------------------------------


def test_reused_key_with_other_text_or_room_is_409(ingest, send):
    assert send("lobby", {"text": "original"}, key="k").status == 200

    other_text = send("lobby", {"text": "changed"}, key="k")
    assert other_text.status == 409
    assert other_text.json["ok"] is False
    assert other_text.json["code"] == "idempotency_key_reused"

    other_room = send("elsewhere", {"text": "original"}, key="k")
    assert other_room.status == 409
    assert other_room.json["code"] == "idempotency_key_reused"

    state = ingest.state()
    assert [m["text"] for m in state["messages"]] == ["original"]
    assert state["mutation_replays"] == 0
    assert [r["outcome"] for r in state["requests"]] == ["applied", "conflict", "conflict"]
    # The key keeps its first answer.
    assert send("lobby", {"text": "original"}, key="k").json["replayed"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Idempotency-Key": ""},
        {"Idempotency-Key": "x" * 201},
        {"Idempotency-Key": "caf\u00e9"},
        {"Idempotency-Key": "tab\there"},
    ],
    ids=["absent", "empty", "too-long", "non-ascii", "control-char"],
)
def test_missing_or_invalid_key_is_400_and_nothing_applied(ingest, send, headers):
    reply = send("lobby", {"text": "hi"}, key=None, headers=headers)
    assert reply.status == 400
    assert reply.json["ok"] is False
    assert reply.json["code"] == "missing_idempotency_key"
    state = ingest.state()
    assert state["messages"] == []
    assert state["requests"][0]["outcome"] == "missing_key"
    assert state["requests"][0]["kind"] == "mutation"


def test_key_limits_are_inclusive(ingest, send):
    assert send(key="x" * 200).status == 200
    assert send(key="~ !").status == 200


def test_two_key_headers_are_400(ingest):
    body = b'{"text": "hi"}'
    conn = http.client.HTTPConnection("127.0.0.1", ingest.port, timeout=5)
    try:
        conn.putrequest("POST", "/v1/chat/lobby/messages")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Idempotency-Key", "one")
        conn.putheader("Idempotency-Key", "two")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["code"] == "missing_idempotency_key"
    finally:
        conn.close()
    assert ingest.state()["messages"] == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'"text"', b"{}", b'{"text": ""}', b'{"text": 5}', b'{"text": null}', b""],
    ids=["not-json", "list", "string", "no-text", "empty-text", "int-text", "null-text", "empty-body"],
)
def test_invalid_message_is_422_and_a_retry_gets_the_same_answer(ingest, send, body):
    first = send("lobby", body, key="bad")
    assert first.status == 422
    assert first.json["ok"] is False
    assert first.json["code"] == "invalid_message"
    assert isinstance(first.json["error"], str)

    retry = send("lobby", body, key="bad")
    assert retry.status == 422
    assert retry.json == first.json

    state = ingest.state()
    assert state["messages"] == []
    assert [r["outcome"] for r in state["requests"]] == ["invalid", "replayed"]
    assert state["mutation_replays"] == 1


def test_invalid_message_key_is_spent(ingest, send):
    assert send("lobby", {"text": ""}, key="k").status == 422
    fixed = send("lobby", {"text": "now valid"}, key="k")
    assert fixed.status == 409
    assert fixed.json["code"] == "idempotency_key_reused"
    assert ingest.state()["messages"] == []


def test_bad_rooms_and_methods(ingest, send, call):
    for room in ("", "a" * 65, "sp%20ace", "dot.ted"):
        reply = call("POST", ingest.url + f"/v1/chat/{room}/messages", {"text": "x"}, {"Idempotency-Key": "k"})
        assert reply.status == 404, room
        assert reply.json["code"] == "not_found"
    assert send("a" * 64, {"text": "x"}).status == 200
    assert send("Az09_-", {"text": "x"}).status == 200
    wrong_method = call("GET", ingest.messages_url("lobby"))
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "OPTIONS, POST"
    assert len(ingest.state()["messages"]) == 2


def test_generic_mutations_path_is_still_reserved(ingest, call):
    reply = call("POST", ingest.url + "/v1/mutations", {"text": "x"}, headers={"Idempotency-Key": "abc"})
    assert reply.status == 501
    assert reply.json["code"] == "not_implemented"
    assert ingest.state()["messages"] == []


def test_oversized_mutation_is_413_and_logged(make_server):
    with make_server(max_body_bytes=100) as server:
        request = urllib.request.Request(
            server.messages_url("lobby"),
            data=json.dumps({"text": "x" * 200}).encode(),
            method="POST",
            headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)
        assert excinfo.value.code == 413
        state = server.state()
        assert state["messages"] == []
        assert [(r["kind"], r["outcome"], r["status"]) for r in state["requests"]] == [("mutation", "bad_request", 413)]


# ---- mutation faults --------------------------------------------------------


def test_fault_step_applies_nothing_and_retry_applies_once(ingest, send, call):
    faults = call(
        "POST", ingest.url + "/__control/faults", {"mutation_script": [{"status": 503, "retry_after": 2}, {"status": 500}]}
    ).json
    assert [s["status"] for s in faults["mutation_script"]] == [503, 500]
    assert faults["mutation_script"][0] == {
        "status": 503, "retry_after": "2", "delay_ms": None, "store": False, "drop_reply": False, "reject_ids": [],
    }

    first = send("lobby", {"text": "x"}, key="k", headers={"Origin": PAGE_ORIGIN})
    assert first.status == 503
    assert first.json == {"ok": False, "code": "fault_503"}
    assert first.headers["Retry-After"] == "2"
    second = send("lobby", {"text": "x"}, key="k")
    assert second.status == 500 and second.json == {"ok": False, "code": "fault_500"}
    assert ingest.state()["messages"] == []

    third = send("lobby", {"text": "x"}, key="k")
    assert third.json == {"ok": True, "emitId": "k", "message_id": 1, "replayed": False}
    state = ingest.state()
    assert len(state["messages"]) == 1
    assert [r["outcome"] for r in state["requests"]] == ["fault", "fault", "applied"]
    assert state["faults"]["mutation_script"] == []


def test_fault_step_with_store_applies_but_replies_failure(ingest, send):
    ingest.set_faults({"mutation_script": [{"status": 500, "store": True}]})
    first = send("lobby", {"text": "x"}, key="k")
    assert first.status == 500 and first.json == {"ok": False, "code": "fault_500"}
    assert len(ingest.state()["messages"]) == 1
    assert ingest.state()["requests"][0]["effect"] == "applied"
    retry = send("lobby", {"text": "x"}, key="k")
    assert retry.json == {"ok": True, "emitId": "k", "message_id": 1, "replayed": True}
    assert len(ingest.state()["messages"]) == 1


def test_2xx_step_sets_the_status_of_the_ack(ingest, send):
    ingest.set_faults({"mutation_script": [{"status": 202}, {"status": 200, "store": False}]})
    accepted = send("lobby", {"text": "x"}, key="k")
    assert accepted.status == 202
    assert accepted.json == {"ok": True, "emitId": "k", "message_id": 1, "replayed": False}
    not_applied = send("lobby", {"text": "y"}, key="k2")
    assert not_applied.status == 200
    assert not_applied.json == {"ok": False, "code": "fault_200"}
    assert [m["text"] for m in ingest.state()["messages"]] == ["x"]


def test_mutation_offline_closes_and_applies_nothing(ingest, send, call):
    faults = call("POST", ingest.url + "/__control/faults", {"mutation_offline": True}).json
    assert faults["mutation_offline"] is True and faults["offline"] is False
    ingest.set_faults({"mutation_script": [{"status": 503}]})

    with pytest.raises(OSError) as excinfo:
        send("lobby", {"text": "x"}, key="k")
    assert_no_reply(excinfo.value)
    preflight = call("OPTIONS", ingest.messages_url("lobby"), headers={"Origin": PAGE_ORIGIN})
    assert preflight.status == 204

    state = ingest.state()
    assert state["messages"] == []
    assert state["requests"][0]["outcome"] == "offline"
    assert state["requests"][0]["idempotency_key"] == "k"
    assert len(state["faults"]["mutation_script"]) == 1  # offline consumes no step

    ingest.set_faults({"mutation_offline": False})
    assert send("lobby", {"text": "x"}, key="k").status == 503
    assert send("lobby", {"text": "x"}, key="k").json["replayed"] is False


def test_mutation_step_delay_comes_before_applying(ingest, send):
    ingest.set_faults({"mutation_script": [{"delay_ms": 300}]})
    t0 = time.monotonic()
    reply = send("lobby", {"text": "x"}, key="k")
    assert time.monotonic() - t0 >= 0.3
    assert reply.status == 200
    message = ingest.state()["messages"][0]
    request = ingest.state()["requests"][0]
    assert message["at_ms"] - request["at_ms"] >= 300


def test_mutation_faults_do_not_touch_event_requests(ingest, send, post_events, make_envelope):
    ingest.set_faults(
        {"mutation_script": [{"status": 503}, {"drop_reply": True}], "mutation_offline": False, "mutation_delay_ms": 400}
    )
    t0 = time.monotonic()
    for _ in range(3):
        assert post_events([make_envelope()]).status == 200
    assert time.monotonic() - t0 < 0.4
    assert len(ingest.faults()["mutation_script"]) == 2

    ingest.set_faults({"mutation_offline": True})
    assert post_events([make_envelope()]).status == 200
    assert ingest.state()["unique"] == 4
    assert len(ingest.faults()["mutation_script"]) == 2


def test_event_faults_do_not_touch_mutation_requests(ingest, send, post_events, make_envelope):
    ingest.set_faults({"script": [{"status": 503}, {"drop_reply": True}], "delay_ms": 400, "poison_events": ["p"]})
    t0 = time.monotonic()
    for i in range(3):
        assert send("lobby", {"text": f"m{i}"}).status == 200
    assert time.monotonic() - t0 < 0.4
    assert len(ingest.faults()["script"]) == 2

    ingest.set_faults({"offline": True})
    assert send("lobby", {"text": "while events are offline"}).status == 200
    assert len(ingest.state()["messages"]) == 4
    assert len(ingest.faults()["script"]) == 2

    ingest.set_faults({"offline": False, "delay_ms": 0})
    assert post_events([make_envelope()]).status == 503  # the event script is still whole


def test_mutation_fault_updates_are_validated(ingest, call):
    before = ingest.faults()
    for bad in (
        {"mutation_offline": "yes"},
        {"mutation_script": [{"status": 99}]},
        {"mutation_script": [{"statuss": 503}]},
        {"mutation_script": {"status": 503}},
        {"mutation_delay_ms": -1},
        {"mutation_delay_ms": 1.5},
        {"mutation_offlne": True},
    ):
        reply = call("POST", ingest.url + "/__control/faults", bad)
        assert reply.status == 400, bad
        assert reply.json["code"] == "bad_request"
        with pytest.raises(ValueError):
            ingest.set_faults(bad)
    assert "mutation_script[0]" in call(
        "POST", ingest.url + "/__control/faults", {"mutation_script": [{"status": 1}]}
    ).json["error"]
    assert ingest.faults() == before
    cleared = ingest.set_faults({"mutation_script": [{"status": 503}]})
    assert len(cleared["mutation_script"]) == 1
    assert ingest.set_faults({"mutation_script": None})["mutation_script"] == []


# ---- reset, persistence, CORS -----------------------------------------------


def test_reset_clears_messages_keys_counters_and_mutation_faults(ingest, send, call):
    send("lobby", {"text": "x"}, key="k")
    send("lobby", {"text": "x"}, key="k")
    ingest.set_faults({"mutation_script": [{"status": 503}], "mutation_offline": True, "mutation_delay_ms": 5})

    assert call("POST", ingest.url + "/__control/reset").status == 200

    state = ingest.state()
    assert state["messages"] == [] and state["mutation_replays"] == 0 and state["requests"] == []
    assert state["faults"]["mutation_script"] == []
    assert state["faults"]["mutation_offline"] is False
    assert state["faults"]["mutation_delay_ms"] == 0
    # The key is new again, and numbering restarts.
    again = send("lobby", {"text": "different text is fine now"}, key="k")
    assert again.json == {"ok": True, "emitId": "k", "message_id": 1, "replayed": False}
    assert ingest.state()["messages"][0]["seq_in_room"] == 1


def test_messages_and_keys_survive_a_restart(db_url, call):
    with IngestServer(db_url=db_url) as server:
        assert call("POST", server.messages_url("r"), {"text": "a"}, {"Idempotency-Key": "k1"}).status == 200
        call("POST", server.messages_url("r"), {"text": "a"}, {"Idempotency-Key": "k1"})
    with IngestServer(db_url=db_url) as server:
        state = server.state()
        assert [m["text"] for m in state["messages"]] == ["a"]
        assert state["mutation_replays"] == 1
        replay = call("POST", server.messages_url("r"), {"text": "a"}, {"Idempotency-Key": "k1"})
        assert replay.json == {"ok": True, "emitId": "k1", "message_id": 1, "replayed": True}
        fresh = call("POST", server.messages_url("r"), {"text": "b"}, {"Idempotency-Key": "k2"})
        assert fresh.json["message_id"] == 2
        state = server.state()
        assert state["messages"][1]["seq_in_room"] == 2
        assert state["mutation_replays"] == 2
        # Request sequence numbers keep counting across the restart.
        assert state["messages"][1]["request_seq"] == 4


def test_preflight_allows_the_idempotency_key_header(ingest, call):
    reply = call(
        "OPTIONS",
        ingest.messages_url("lobby"),
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert reply.status == 204
    h = reply.headers
    assert h["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert h["Access-Control-Allow-Credentials"] == "true"
    allowed = {x.strip().lower() for x in h["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "idempotency-key"} <= allowed
    assert "POST" in {x.strip() for x in h["Access-Control-Allow-Methods"].split(",")}
    assert ingest.state()["requests"] == []

    default = call("OPTIONS", ingest.messages_url("lobby"), headers={"Origin": PAGE_ORIGIN})
    allowed = {x.strip().lower() for x in default.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "idempotency-key"} <= allowed


def test_cors_headers_on_mutation_replies(ingest, send):
    replies = [
        send("lobby", {"text": "x"}, key="k", headers={"Origin": PAGE_ORIGIN}),
        send("lobby", {"text": "x"}, key="k", headers={"Origin": PAGE_ORIGIN}),
        send("lobby", {"text": "y"}, key="k", headers={"Origin": PAGE_ORIGIN}),
        send("lobby", {"text": ""}, headers={"Origin": PAGE_ORIGIN}),
        send("lobby", {"text": "x"}, key=None, headers={"Origin": PAGE_ORIGIN}),
    ]
    assert [r.status for r in replies] == [200, 200, 409, 422, 400]
    for reply in replies:
        assert reply.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        assert reply.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Retry-After" in reply.headers["Access-Control-Expose-Headers"]
