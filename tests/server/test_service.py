"""What the ingest service adds to the wire contract: gzip bodies, API keys,
limits, per-envelope rejection of bad input, operations endpoints, the
request log fields, schema migration. Runs against SQLite and PostgreSQL.
"""

from __future__ import annotations

import gzip
import http.client
import json
import sqlite3
import time
import zlib

import pytest

from demo.ingest_server import IngestServer

PAGE_ORIGIN = "http://localhost:8000"


def raw_post(server, body: bytes, headers: dict[str, str], path: str = "/v1/behavior/events"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def events_body(batch, api_key="test-key") -> bytes:
    return json.dumps({"api_key": api_key, "batch": batch}).encode()


# ---- gzip -------------------------------------------------------------------


def test_gzip_body_with_content_encoding_is_stored(ingest, make_envelope):
    batch = [make_envelope(n=i) for i in range(20)]
    plain = events_body(batch)
    packed = gzip.compress(plain)
    status, _, reply = raw_post(ingest, packed, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200
    assert json.loads(reply)["accepted"] == [e["event_id"] for e in batch]
    state = ingest.state()
    assert state["unique"] == 20
    (req,) = state["requests"]
    assert req["content_encoding"] == "gzip"
    assert req["wire_bytes"] == len(packed) == req["bytes"]
    assert req["body_bytes"] == len(plain)
    assert req["event_ids"] == [e["event_id"] for e in batch]
    assert req["at_ms"] <= req["finished_ms"]


def test_gzip_body_without_header_is_sniffed(ingest, make_envelope):
    """sendBeacon cannot set Content-Encoding: the gzip magic bytes decide."""
    batch = [make_envelope()]
    packed = gzip.compress(events_body(batch))
    status, _, reply = raw_post(ingest, packed, {"Content-Type": "text/plain;charset=UTF-8"})
    assert status == 200
    assert json.loads(reply)["accepted"] == [batch[0]["event_id"]]
    (req,) = ingest.state()["requests"]
    assert req["content_encoding"] is None and req["body_bytes"] > req["wire_bytes"] - 100


def test_gzip_bomb_is_413_and_decoding_stops(make_server):
    with make_server(max_body_bytes=100_000) as server:
        bomb = gzip.compress(b'{"api_key": "k", "batch": [], "pad": "' + b"0" * 50_000_000 + b'"}')
        assert len(bomb) < 100_000
        t0 = time.monotonic()
        status, headers, reply = raw_post(server, bomb, {"Content-Encoding": "gzip"})
        assert status == 413
        assert json.loads(reply)["code"] == "too_large"
        assert "decoded" in json.loads(reply)["error"]
        assert time.monotonic() - t0 < 5
        assert server.state()["unique"] == 0


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"\x1f\x8b\x08\x00garbage", {}, 400, "bad_encoding"),
        (gzip.compress(b'{"api_key": "k", "batch": []}')[:-6], {"Content-Encoding": "gzip"}, 400, "bad_encoding"),
        (b'{"api_key": "k", "batch": []}', {"Content-Encoding": "br"}, 415, "unsupported_encoding"),
        (zlib.compress(b'{"api_key": "k", "batch": []}'), {"Content-Encoding": "deflate"}, 415, "unsupported_encoding"),
    ],
    ids=["corrupt-sniffed", "truncated", "brotli", "deflate"],
)
def test_bad_encodings_are_refused_and_nothing_stored(ingest, body, headers, status, code):
    got, _, reply = raw_post(ingest, body, headers)
    assert got == status
    assert json.loads(reply)["code"] == code
    assert ingest.state()["unique"] == 0


def test_reply_advertises_gzip_and_preflight_allows_content_encoding(ingest, call, make_envelope):
    reply = call("POST", ingest.url + "/v1/behavior/events", {"api_key": "k", "batch": [make_envelope()]})
    assert reply.json["accept_encoding"] == ["gzip"]
    preflight = call("OPTIONS", ingest.url + "/v1/behavior/events", headers={"Origin": PAGE_ORIGIN})
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "content-encoding", "idempotency-key"} <= allowed
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0


# ---- API keys, origins, limits ----------------------------------------------


def test_api_keys_configured_refuse_unknown_and_missing_keys(make_server, make_envelope, call):
    with make_server(api_keys=("good-key", "other-key")) as server:
        url = server.url + "/v1/behavior/events"
        env = make_envelope()
        for body in ({"api_key": "bad", "batch": [env]}, {"batch": [env]}, {"api_key": "", "batch": [env]}):
            reply = call("POST", url, body)
            assert reply.status == 401, body
            assert reply.json["code"] == "unauthorized"
        assert server.state()["unique"] == 0
        assert [r["outcome"] for r in server.state()["requests"]] == ["unauthorized"] * 3
        assert call("POST", url, {"api_key": "other-key", "batch": [env]}).status == 200
        assert server.state()["unique"] == 1


def test_allowed_origins_are_echoed_and_others_get_no_cors(make_server, call, make_envelope):
    with make_server(allowed_origins=(PAGE_ORIGIN,)) as server:
        url = server.url + "/v1/behavior/events"
        ok = call("POST", url, {"api_key": "k", "batch": [make_envelope()]}, headers={"Origin": PAGE_ORIGIN})
        assert ok.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        other = call("POST", url, {"api_key": "k", "batch": [make_envelope()]}, headers={"Origin": "https://evil.example"})
        assert other.headers["Access-Control-Allow-Origin"] is None
        preflight = call("OPTIONS", url, headers={"Origin": "https://evil.example"})
        assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] is None


def test_too_many_events_is_413(ingest, post_events, make_envelope):
    reply = post_events([{"event_id": f"e{i}", "event": "x"} for i in range(2001)])
    assert reply.status == 413
    assert reply.json["code"] == "too_many_events"
    assert ingest.state()["unique"] == 0


def test_bad_envelopes_are_rejected_alone(ingest, post_events, make_envelope):
    good = make_envelope("good")
    nul_id = make_envelope(event_id="a\x00b")
    long_id = make_envelope(event_id="x" * 201)
    surrogate = make_envelope(properties={"text": "\ud800"})
    nul_name = make_envelope("bad\x00name")
    body = json.dumps({"api_key": "k", "batch": [nul_id, good, long_id, surrogate, nul_name]})
    reply = post_events(body=body)
    assert reply.status == 200
    assert reply.json["accepted"] == [good["event_id"]]
    assert [r["code"] for r in reply.json["rejected"]] == ["invalid_envelope"] * 4
    assert [e["event"] for e in ingest.state()["events"]] == ["good"]


def test_malformed_body_reasons(ingest, post_events):
    cases = {b"nope": "invalid_json", b"[1]": "not_an_object", b'{"batch": []}': "missing_api_key",
             b'{"api_key": "k"}': "missing_batch", b'{"api_key": "k", "batch": 1}': "invalid_batch"}
    for body, reason in cases.items():
        reply = post_events(body=body)
        assert (reply.status, reply.json["code"], reply.json["reason"]) == (400, "bad_request", reason)


def test_big_values_and_non_integer_times_are_kept_in_the_envelope(ingest, post_events, make_envelope):
    env = make_envelope(created_at=1.5e300, sent_at="yesterday", stream=12, properties={"n": 2**70})
    assert post_events([env]).status == 200
    (stored,) = ingest.state()["events"]
    assert stored["envelope"] == env
    assert stored["created_at"] == 1.5e300 and stored["sent_at"] is None and stored["stream"] is None


# ---- operations -------------------------------------------------------------


def test_healthz_readyz_and_metrics(ingest, post_events, call, make_envelope):
    batch = [make_envelope() for _ in range(3)]
    post_events(batch)
    post_events(batch + [{"event": "no id"}])
    assert call("GET", ingest.url + "/healthz").json["ok"] is True
    ready = call("GET", ingest.url + "/readyz")
    assert ready.status == 200 and ready.json["db"] in ("sqlite", "postgresql")
    metrics = call("GET", ingest.url + "/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.raw.decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["revu_ingest_events_received_total"] == 6
    assert values["revu_ingest_events_stored_total"] == 3
    assert values["revu_ingest_events_duplicate_total"] == 3
    assert values['revu_ingest_events_rejected_total{code="invalid_envelope"}'] == 1
    assert values['revu_ingest_requests_total{route="events",status="200"}'] == 2
    assert values['revu_ingest_request_duration_seconds_count{route="events"}'] == 2


def test_database_unavailable_is_503_with_retry_after(tmp_path, make_envelope, call):
    db = tmp_path / "locked.sqlite3"
    with IngestServer(db_url=f"sqlite:///{db}?busy_timeout_ms=200") as server:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            reply = call("POST", server.url + "/v1/behavior/events", {"api_key": "k", "batch": [make_envelope()]})
            assert reply.status == 503
            assert reply.json["code"] == "unavailable"
            assert reply.headers["Retry-After"] == "1"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert call("POST", server.url + "/v1/behavior/events", {"api_key": "k", "batch": [make_envelope()]}).status == 200


# ---- schema -----------------------------------------------------------------

_LEGACY_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, api_key TEXT NOT NULL,
    event TEXT NOT NULL, properties TEXT NOT NULL, envelope TEXT NOT NULL, created_at INTEGER, sent_at INTEGER,
    stream TEXT, received_at_ms INTEGER NOT NULL, request_seq INTEGER NOT NULL, receipts INTEGER NOT NULL DEFAULT 1);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE messages (message_id INTEGER PRIMARY KEY, room TEXT NOT NULL, text TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE, at_ms INTEGER NOT NULL, seq_in_room INTEGER NOT NULL,
    request_seq INTEGER NOT NULL, UNIQUE (room, seq_in_room));
CREATE TABLE mutation_keys (idempotency_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    reply TEXT NOT NULL, message_id INTEGER, at_ms INTEGER NOT NULL);
INSERT INTO events (event_id, api_key, event, properties, envelope, created_at, sent_at, stream, received_at_ms,
    request_seq, receipts) VALUES
    ('old-1', 'k', 'first', '{}', '{"event_id":"old-1","event":"first","created_at":5}', 5, 6, 's', 100, 1, 2),
    ('old-2', 'k', 'second', '{}', '{"event_id":"old-2","event":"second"}', NULL, NULL, NULL, 200, 3, 1);
INSERT INTO messages VALUES (1, 'lobby', 'hi', 'key-1', 300, 1, 2);
INSERT INTO mutation_keys VALUES ('key-1', '["lobby","hi"]', 200,
    '{"ok":true,"emitId":"key-1","message_id":1,"replayed":false}', 1, 300);
INSERT INTO counters VALUES ('duplicates', 1), ('received_total', 3), ('request_seq', 4), ('mutation_replays', 1);
"""


def test_legacy_reference_server_file_is_migrated(tmp_path, call):
    db = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(_LEGACY_SCHEMA)
    with IngestServer(db_path=str(db)) as server:
        state = server.state()
        assert [e["event_id"] for e in state["events"]] == ["old-1", "old-2"]
        assert (state["unique"], state["duplicates"], state["received_total"]) == (2, 1, 3)
        assert state["mutation_replays"] == 1
        assert state["events"][0]["created_at"] == 5 and state["events"][0]["stream"] == "s"
        replay = call("POST", server.messages_url("lobby"), {"text": "hi"}, {"Idempotency-Key": "key-1"})
        assert replay.json == {"ok": True, "emitId": "key-1", "message_id": 1, "replayed": True}
        fresh = call("POST", server.messages_url("lobby"), {"text": "more"}, {"Idempotency-Key": "key-2"})
        assert fresh.json["message_id"] == 2
        assert server.state()["messages"][1]["seq_in_room"] == 2
        assert server.state()["messages"][1]["request_seq"] == 6  # numbering went on from 4
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not any(t.startswith("legacy_") for t in tables)
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (1,)


def test_schema_from_a_newer_version_is_refused(tmp_path):
    db = tmp_path / "future.sqlite3"
    with IngestServer(db_path=str(db)):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(Exception, match="newer"):
        IngestServer(db_path=str(db)).start()
