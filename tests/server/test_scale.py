"""Several real `revu-ingest serve` processes behind one database.

Each test starts the console script as separate processes on loopback ports
and drives them with 8 concurrent clients: 20,000 unique events in batches of
50, 20% of the batches sent twice (half of those at the same moment to two
different processes, half later to another process). Counts are read from
the database itself, not from the servers' counters.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

N_EVENTS = 20_000
BATCH = 50
CLIENTS = 8
RESEND_EVERY = 5  # every 5th batch is sent twice: 20%
REQUEST_TIMEOUT_S = 60
SERVE = Path(sys.executable).parent / "revu-ingest"


# ---- processes --------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen
    port: int
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


def start_servers(db_url: str, count: int, tmp_path: Path, *extra: str) -> list[Proc]:
    procs = []
    for i in range(count):
        log = tmp_path / f"serve-{i}-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [str(SERVE), "serve", "--db", db_url, "--port", "0", "--no-access-log", "--pool-max", "4", *extra],
                stdout=subprocess.DEVNULL, stderr=out,
            )
        procs.append(Proc(popen, 0, log))
    deadline = time.monotonic() + 60
    for proc in procs:
        while proc.port == 0:
            assert proc.alive, f"revu-ingest serve exited: {proc.log.read_text()}"
            assert time.monotonic() < deadline, f"no 'listening' line: {proc.log.read_text()}"
            for line in proc.log.read_text().splitlines():
                if '"listening"' in line:
                    proc.port = json.loads(line)["port"]
            time.sleep(0.05)
    for proc in procs:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.alive, proc.log.read_text()
            assert time.monotonic() < deadline, f"not ready: {proc.log.read_text()}"
            time.sleep(0.05)
    return procs


def stop_servers(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.alive:
            proc.popen.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


@pytest.fixture
def servers() -> Iterator[list[list[Proc]]]:
    started: list[list[Proc]] = []
    yield started
    for group in started:
        stop_servers(group)


# ---- the database, read directly ---------------------------------------------


def db_counts(db_url: str) -> tuple[set[str], int]:
    """(event ids stored, SUM(receipts)) straight from the database."""
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
            receipts = conn.execute("SELECT COALESCE(SUM(receipts), 0) FROM events").fetchone()[0]
        return ids, receipts
    import psycopg

    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
        receipts = conn.execute("SELECT COALESCE(SUM(receipts), 0) FROM events").fetchone()[0]
    return ids, int(receipts)


# ---- the load ---------------------------------------------------------------


@dataclass
class Load:
    batches: list[tuple[list[str], bytes]]
    resend_now: set[int]  # sent twice at the same moment, to two processes
    resend_later: set[int]  # sent again after the first ack, to another process
    acked_ids: set[str] = field(default_factory=set)
    acked_envelopes: int = 0
    attempted_envelopes: int = 0
    no_reply: int = 0  # attempts that got no HTTP reply (or a 5xx) and were re-sent
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_load() -> Load:
    batches = []
    for b in range(N_EVENTS // BATCH):
        envs = [
            {
                "event_id": str(uuid.uuid4()),
                "event": "page_view",
                "properties": {"path": f"/p/{b}/{i}", "n": i, "text": "x" * 120},
                "created_at": 1_700_000_000_000 + b * BATCH + i,
                "sent_at": 1_700_000_100_000,
            }
            for i in range(BATCH)
        ]
        body = json.dumps({"api_key": "scale-test", "batch": envs}).encode()
        batches.append(([e["event_id"] for e in envs], body))
    twice = [b for b in range(len(batches)) if b % RESEND_EVERY == 0]
    return Load(batches, set(twice[0::2]), set(twice[1::2]))


class Client:
    """One keep-alive connection per process; a failed attempt (no reply,
    5xx) is re-sent to the next live process until acknowledged."""

    def __init__(self, procs: list[Proc], offset: int) -> None:
        self.procs = procs
        self.next = offset
        self.conns: dict[int, http.client.HTTPConnection] = {}
        self.refused: set[int] = set()  # ports that refused a connection: that process is gone

    def _conn(self, port: int) -> http.client.HTTPConnection:
        if port not in self.conns:
            self.conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        return self.conns[port]

    def pick(self) -> Proc:
        # A client learns that a process died the way a real one does: its
        # connection is reset or refused (never by asking the OS).
        for _ in range(len(self.procs)):
            proc = self.procs[self.next % len(self.procs)]
            self.next += 1
            if proc.port not in self.refused:
                return proc
        raise RuntimeError("no server process left")

    def send(self, load: Load, index: int, proc: Proc | None = None) -> None:
        ids, body = load.batches[index]
        deadline = time.monotonic() + 120
        while True:
            target = proc or self.pick()
            proc = None
            with load.lock:
                load.attempted_envelopes += len(ids)
            try:
                conn = self._conn(target.port)
                conn.request("POST", "/v1/behavior/events", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                reply = response.read()
                if 200 <= response.status < 300:
                    assert json.loads(reply)["accepted"] == ids
                    with load.lock:
                        load.acked_ids.update(ids)
                        load.acked_envelopes += len(ids)
                    return
                if response.status < 500:
                    raise AssertionError(f"batch {index}: {response.status} {reply[:200]!r}")
            except ConnectionRefusedError:
                self.conns.pop(target.port, None)
                self.refused.add(target.port)
            except (OSError, http.client.HTTPException):
                self.conns.pop(target.port, None)
            with load.lock:
                load.no_reply += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {index} never acknowledged")
            time.sleep(0.05)


def run_load(procs: list[Proc], load: Load, on_progress: Any = None) -> None:
    def worker(w: int) -> None:
        client = Client(procs, offset=w)
        twin = Client(procs, offset=w + 1)
        later = []
        try:
            for index in range(w, len(load.batches), CLIENTS):
                if index in load.resend_now:
                    # The same batch to two different processes at the same moment.
                    first, second = client.pick(), client.pick()
                    if first is second:
                        second = client.pick()
                    barrier = threading.Barrier(2)

                    def other() -> None:
                        barrier.wait()
                        twin.send(load, index, second)

                    t = threading.Thread(target=other)
                    t.start()
                    barrier.wait()
                    client.send(load, index, first)
                    t.join()
                else:
                    client.send(load, index)
                if index in load.resend_later:
                    later.append(index)
                if on_progress is not None:
                    on_progress()
            for index in later:
                client.send(load, index)
        except BaseException as exc:  # reported by the test
            load.errors.append(f"client {w}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def check_exact(db_url: str, load: Load) -> None:
    ids, receipts = db_counts(db_url)
    all_ids = {i for ids_, _ in load.batches for i in ids_}
    resent = (len(load.resend_now) + len(load.resend_later)) * BATCH
    assert load.errors == []
    assert load.no_reply == 0, "no attempt may fail without a fault"
    assert len(all_ids) == N_EVENTS
    assert ids == all_ids  # exactly the 20,000 unique events
    assert load.acked_envelopes == N_EVENTS + resent
    assert receipts == N_EVENTS + resent
    assert receipts - len(ids) == resent == 4_000  # duplicates before dedupe, counted exactly


# ---- tests ------------------------------------------------------------------


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_sharing_postgresql_dedupe_exactly(processes, pg_schema_url, servers, tmp_path):
    procs = start_servers(pg_schema_url, processes, tmp_path)
    servers.append(procs)
    load = make_load()
    run_load(procs, load)
    check_exact(pg_schema_url, load)
    assert all(p.alive for p in procs)


def test_two_processes_sharing_one_sqlite_file_dedupe_exactly(servers, tmp_path):
    db_url = "sqlite:///" + str(tmp_path / "shared.sqlite3")
    procs = start_servers(db_url, 2, tmp_path)
    servers.append(procs)
    load = make_load()
    run_load(procs, load)
    check_exact(db_url, load)


def test_kill_9_mid_load_loses_no_acknowledged_event(pg_schema_url, servers, tmp_path):
    procs = start_servers(pg_schema_url, 3, tmp_path)
    servers.append(procs)
    load = make_load()
    victim = procs[1]
    killed = threading.Event()
    progress = [0]
    lock = threading.Lock()

    def on_progress() -> None:
        with lock:
            progress[0] += 1
            if progress[0] == len(load.batches) // 4 and not killed.is_set():
                os.kill(victim.popen.pid, signal.SIGKILL)
                killed.set()

    run_load(procs, load, on_progress)

    assert killed.is_set() and victim.popen.wait(timeout=10) == -signal.SIGKILL
    assert load.errors == []
    ids, receipts = db_counts(pg_schema_url)
    all_ids = {i for ids_, _ in load.batches for i in ids_}
    assert load.acked_ids <= ids  # every event that got a 2xx is stored
    assert ids == all_ids  # clients re-sent what got no reply: nothing lost
    assert load.no_reply >= 1  # the clients did see the process die
    # Receipts: at least every acknowledged envelope, at most every attempt.
    assert load.acked_envelopes <= receipts <= load.attempted_envelopes
    assert [p.alive for p in procs] == [True, False, True]
    print(f"\nkill -9 figures: attempts without reply {load.no_reply}, acked envelopes {load.acked_envelopes}, "
          f"stored receipts {receipts}, attempted {load.attempted_envelopes}")


def test_sigterm_finishes_the_request_in_flight(pg_schema_url, servers, tmp_path, make_envelope):
    """Graceful shutdown: a request being answered when SIGTERM arrives is
    answered (and stored) before the process exits."""
    (proc,) = start_servers(pg_schema_url, 1, tmp_path, "--test-faults")
    servers.append([proc])
    base = f"http://127.0.0.1:{proc.port}"
    request = urllib.request.Request(base + "/__control/faults", data=b'{"delay_ms": 1500}', method="POST")
    urllib.request.urlopen(request, timeout=5).read()
    env = make_envelope()
    result: dict[str, Any] = {}

    def post() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
        conn.request("POST", "/v1/behavior/events", body=json.dumps({"api_key": "k", "batch": [env]}))
        response = conn.getresponse()
        result["status"], result["body"] = response.status, json.loads(response.read())

    t = threading.Thread(target=post)
    t.start()
    time.sleep(0.5)  # the request is now inside its 1.5 s delay
    proc.popen.send_signal(signal.SIGTERM)
    t.join(timeout=30)
    assert result["status"] == 200 and result["body"]["accepted"] == [env["event_id"]]
    proc.popen.wait(timeout=30)
    ids, _ = db_counts(pg_schema_url)
    assert ids == {env["event_id"]}
    log = proc.log.read_text()
    assert "test fault layer enabled" in log


def test_serve_has_no_fault_layer_by_default_and_logs_each_request(pg_schema_url, servers, tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([str(SERVE), "serve", "--db", pg_schema_url, "--port", "0"],
                                 stdout=subprocess.DEVNULL, stderr=out)
    proc = Proc(popen, 0, log)
    servers.append([proc])
    deadline = time.monotonic() + 60
    while proc.port == 0:
        assert proc.alive and time.monotonic() < deadline, log.read_text()
        for line in log.read_text().splitlines():
            if '"listening"' in line:
                listening = json.loads(line)
                proc.port = listening["port"]
        time.sleep(0.05)
    assert "any non-empty api_key is accepted" in listening["api_keys"]
    assert listening["test_faults"] is False
    base = f"http://127.0.0.1:{proc.port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=5).read()
            break
        except OSError:
            time.sleep(0.05)
    for path in ("/__control/state", "/__control/faults"):
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(base + path, timeout=5)
        assert excinfo.value.code == 404
    request = urllib.request.Request(base + "/__control/faults", data=b'{"offline": true}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    assert excinfo.value.code == 404
    # The log line is written once the reply is out: give it a moment.
    for _ in range(100):
        lines = [json.loads(line) for line in log.read_text().splitlines() if '"msg":"request"' in line]
        if len(lines) >= 4:
            break
        time.sleep(0.05)
    assert lines[0]["path"] == "/readyz" and lines[0]["pid"] == popen.pid and lines[0]["ms"] >= 0
    assert [(entry["path"], entry["status"]) for entry in lines[-3:]] == [
        ("/__control/state", 404), ("/__control/faults", 404), ("/__control/faults", 404),
    ]


def test_workers_share_one_port_and_metrics_sum_over_workers(pg_schema_url, servers, tmp_path):
    """`--workers 2`: uvicorn's supervisor runs two worker processes on one
    port; /metrics (prometheus multiprocess mode) sums both."""
    (proc,) = start_servers(pg_schema_url, 1, tmp_path, "--workers", "2")
    servers.append([proc])
    load = make_load()
    load.batches = load.batches[:40]
    threads = []
    for w in range(4):
        def send_some(w: int = w) -> None:
            c = Client([proc], 0)
            for index in range(w, 40, 4):
                c.send(load, index)
        threads.append(threading.Thread(target=send_some))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.errors == [] and load.no_reply == 0
    ids, receipts = db_counts(pg_schema_url)
    assert len(ids) == receipts == 40 * BATCH
    workers = [line for line in proc.log.read_text().splitlines() if "Started server process" in line]
    assert len({json.loads(line)["pid"] for line in workers}) == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    stored = [line for line in text.splitlines() if line.startswith("revu_ingest_events_stored_total ")]
    assert stored and float(stored[0].split()[1]) == 40 * BATCH


@pytest.mark.parametrize("backend_kind", ["postgresql", "sqlite"])
def test_one_idempotency_key_applies_once_across_processes(backend_kind, request, servers, tmp_path):
    """20 keys, each sent by 6 clients at the same moment, spread over two
    processes: each key applies exactly once, the other 5 are replays."""
    if backend_kind == "postgresql":
        db_url = request.getfixturevalue("pg_schema_url")
    else:
        db_url = "sqlite:///" + str(tmp_path / "mutations.sqlite3")
    procs = start_servers(db_url, 2, tmp_path)
    servers.append(procs)
    replies: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def send(key: str, port: int, barrier: threading.Barrier) -> None:
        body = json.dumps({"text": f"text of {key}"}).encode()
        barrier.wait()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/chat/room-1/messages", body=body,
                     headers={"Content-Type": "application/json", "Idempotency-Key": key})
        response = conn.getresponse()
        with lock:
            replies.append((key, response.status, json.loads(response.read())))
        conn.close()

    keys = [f"key-{i}" for i in range(20)]
    for key in keys:
        barrier = threading.Barrier(6)
        threads = [threading.Thread(target=send, args=(key, procs[i % 2].port, barrier)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(replies) == 120 and all(status == 200 for _, status, _ in replies)
    for key in keys:
        mine = [body for k, _, body in replies if k == key]
        assert sorted(b["replayed"] for b in mine) == [False] + [True] * 5
        assert len({b["message_id"] for b in mine}) == 1
    if backend_kind == "postgresql":
        import psycopg

        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT idempotency_key, seq_in_room FROM messages ORDER BY message_id").fetchall()
            replays = conn.execute("SELECT SUM(replays) FROM mutation_keys").fetchone()[0]
    else:
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            rows = conn.execute("SELECT idempotency_key, seq_in_room FROM messages ORDER BY message_id").fetchall()
            replays = conn.execute("SELECT SUM(replays) FROM mutation_keys").fetchone()[0]
    assert sorted(k for k, _ in rows) == sorted(keys)  # one message per key
    assert [s for _, s in rows] == list(range(1, 21))  # the room's sequence has no gap and no repeat
    assert replays == 100
