"""revu.runtimes.cpython against the reference ingest server: delivery,
offline then online, bad input, kill -9 mid-flush and a restart, and three
processes sharing one SQLite file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from revu.runtimes import cpython as revu


def _rows(db: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM revu_queue").fetchone()[0]


def _overlaps(state: dict) -> int:
    """Pairs of event requests that overlap in time and share an event id
    (the owner rule says: none)."""
    requests = [r for r in state["requests"] if r["kind"] == "events"]
    overlaps = 0
    for i, a in enumerate(requests):
        for b in requests[i + 1:]:
            a_end = a["finished_ms"] if a["finished_ms"] is not None else float("inf")
            b_end = b["finished_ms"] if b["finished_ms"] is not None else float("inf")
            if a["at_ms"] <= b_end and b["at_ms"] <= a_end and set(a["event_ids"]) & set(b["event_ids"]):
                overlaps += 1
    return overlaps


def _writable(db: str) -> bool:
    """Whether another connection can take the write lock now."""
    con = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"d": value}
    return value


def _wait(predicate, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def _read_until(proc, marker: str, ids: list[str]) -> str:
    """Read a child's stdout, collecting ``id`` lines, up to the line starting with ``marker``."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child ended before {marker!r}: {proc.stderr.read()[-2000:]}")
        if line.startswith("id "):
            ids.append(line.split()[1])
        elif line.startswith(marker):
            return line


@pytest.fixture
def client(tmp_path, ingest):
    made = []

    def make(**options):
        c = revu.Client("test-key", host=ingest.url, db_path=str(tmp_path / "revu.sqlite3"), **options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(0)


def test_basic_delivery(client, ingest, tmp_path, report):
    c = client(flush_at=100, flush_interval_ms=60_000)
    ids = [c.record("page.view", {"i": i}) for i in range(45)]
    assert _rows(str(tmp_path / "revu.sqlite3")) == 45  # committed before record() returned
    t0 = time.monotonic()
    assert c.flush(10) is True
    elapsed = time.monotonic() - t0
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert state["duplicates"] == 0
    assert [e["properties"]["i"] for e in sorted(state["events"], key=lambda e: e["created_at"])] == list(range(45))
    st = c.status()
    assert st["acked"] == 45 and st["queued"] == 0 and st["store"]["rows"] == 0
    report("basic", events=45, requests=state["requests_total"], flush_s=round(elapsed, 3))


def test_offline_then_online(client, ingest, tmp_path, report):
    ingest.set_faults({"offline": True})
    c = client()
    ids = [c.record("offline.event", {"i": i}) for i in range(12)]
    assert c.flush(5) is False  # the request failed: events stay stored
    st = c.status()
    assert st["queued"] == 12 and st["failures"] >= 1 and st["store"]["rows"] == 12
    assert ingest.state()["unique"] == 0
    ingest.set_faults({"offline": False})
    assert c.flush(10) is True  # a manual flush cuts the backoff short
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert state["duplicates"] == 0 and c.status()["store"]["rows"] == 0
    report("offline", events=12, failed_requests=st["failures"], requests=state["requests_total"])


def test_retries_in_background_without_flush(client, ingest):
    ingest.set_faults({"script": [{"status": 503}, {"status": 503}]})
    c = client(flush_at=1, backoff_base_ms=100, backoff_max_ms=400)
    ids = [c.record("bg.event", {"i": i}) for i in range(3)]
    state = ingest.wait_until(lambda s: s["unique"] == 3, timeout_s=15)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert _wait(lambda: c.status()["queued"] == 0, what="acked")
    assert c.status()["retried"] >= 2


def test_bad_input_is_refused_and_loses_nothing_else(client, ingest, tmp_path):
    c = client()
    good = [c.record("ok", {"n": 1})]
    cyclic: dict = {}
    cyclic["self"] = cyclic
    bad = [
        (("",), "invalid_event"),
        ((123,), "invalid_event"),
        (("x", ["not", "a", "dict"]), "invalid_properties"),
        (("x", {"when": object()}), "unserialisable"),
        (("x", cyclic), "unserialisable"),
        (("x", {"big": "y" * 40_000}), "too_large"),
        (("x", _nested(40)), "too_deep"),
    ]
    for args, code in bad:
        with pytest.raises(revu.RecordError) as info:
            c.record(*args)
        assert info.value.code == code, (args, info.value)
        assert isinstance(info.value, revu.UsageError)
        good.append(c.record("ok", {"n": len(good) + 1}))
    with pytest.raises(revu.RecordError) as info:
        c.record("x", {}, colour="red")
    assert info.value.code == "invalid_options"
    with pytest.raises(revu.RecordError) as info:
        c.record("x", {}, pii=True)
    assert info.value.code == "pii_unsupported"
    with pytest.raises(revu.UsageError):
        revu.Client("k", host="ftp://nope", db_path=str(tmp_path / "other.sqlite3"))
    with pytest.raises(revu.UsageError):
        revu.Client("k", host=ingest.url, db_path=str(tmp_path / "other.sqlite3"), flush_at="soon")
    assert _rows(str(tmp_path / "revu.sqlite3")) == len(good)
    assert c.flush(10) is True
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(good)
    assert state["unique"] == len(good)


def test_module_api_and_record_after_close(ingest, tmp_path):
    db = str(tmp_path / "m.sqlite3")
    revu.init("test-key", host=ingest.url, db_path=db)
    try:
        with pytest.raises(revu.UsageError):
            revu.init("test-key", host=ingest.url, db_path=db)
        event_id = revu.record("module.event", {"a": 1}, stream="s1", priority="high", keys={"messageId": "m1"})
        assert revu.flush(10) is True
        assert revu.status()["acked"] == 1
    finally:
        assert revu.close() is True
    with pytest.raises(revu.UsageError):
        revu.record("after.close")
    [event] = ingest.state()["events"]
    assert event["event_id"] == event_id and event["stream"] == "s1"


def test_close_releases_rows_to_the_next_process(ingest, tmp_path):
    db = str(tmp_path / "r.sqlite3")
    ingest.set_faults({"offline": True})
    first = revu.Client("test-key", host=ingest.url, db_path=db, request_timeout_ms=500)
    ids = [first.record("left.behind", {"i": i}) for i in range(5)]
    assert first.close(1.0) is False  # could not deliver: rows stay, released
    ingest.set_faults({"offline": False})
    second = revu.Client("test-key", host=ingest.url, db_path=db)
    try:
        # released rows (their request ended) are adopted at once, at init
        assert second.flush(10) is True
        assert second.status()["acked"] == 5
    finally:
        second.close(0)
    assert {e["event_id"] for e in ingest.state()["events"]} == set(ids)


def test_kill_9_mid_flush_then_restart(ingest, tmp_path, spawn, report):
    db = str(tmp_path / "k.sqlite3")
    count = 200
    # The first event request is held 2 s by the server: the child is killed while it waits.
    ingest.set_faults({"script": [{"delay_ms": 2000}]})
    options = {"lease_ms": 1000, "request_timeout_ms": 3000, "flush_at": 1000}
    child = spawn("record", db, ingest.url, str(count), "killed", json.dumps(options))
    ids: list[str] = []
    _read_until(child, "flushing", ids)
    assert len(ids) == count
    _wait(lambda: any(r["status"] is None and r["n"] for r in ingest.state()["requests"]), what="request in flight")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = time.monotonic()
    assert _rows(db) == count  # nothing acked, nothing lost
    restart = spawn("drain", db, ingest.url, json.dumps({"lease_ms": 1000}))
    line = _read_until(restart, "done", [])
    restart.wait(30)
    recovered_s = time.monotonic() - killed_at
    state = ingest.wait_until(lambda s: s["unique"] >= count, timeout_s=10)
    received = {e["event_id"] for e in state["events"]}
    assert set(ids) <= received
    assert _rows(db) == 0
    # Duplicates: at most the batch that was in flight at the kill.
    assert state["duplicates"] <= count
    assert _overlaps(state) == 0
    restarted = json.loads(line.split(" ", 1)[1])
    assert restarted["acked"] == count, (restarted, [(r["at_ms"], r["finished_ms"], r["n"], r["status"])
                                                     for r in state["requests"]], restart.stderr.read()[-2000:])
    report("kill-9", events=count, duplicates=state["duplicates"], requests=state["requests_total"],
           recovered_s=round(recovered_s, 2))


def test_three_processes_share_one_file(ingest, tmp_path, spawn, report):
    db = str(tmp_path / "shared.sqlite3")
    per_process = 150
    options = {"lease_ms": 2000, "flush_at": 10, "flush_interval_ms": 200, "pause_s": 0.002}
    t0 = time.monotonic()
    children = [spawn("record", db, ingest.url, str(per_process), f"p{n}", json.dumps(options)) for n in range(3)]
    ids: list[str] = []
    statuses = []
    for child in children:
        line = _read_until(child, "done", ids)
        statuses.append(json.loads(line.split(" ", 1)[1]))
        assert child.wait(30) == 0, child.stderr.read()[-2000:]
    elapsed = time.monotonic() - t0
    assert len(ids) == len(set(ids)) == 3 * per_process
    state = ingest.wait_until(lambda s: s["unique"] >= 3 * per_process, timeout_s=10)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert _rows(db) == 0
    requests = [r for r in state["requests"] if r["kind"] == "events"]
    overlaps = _overlaps(state)
    assert overlaps == 0
    assert state["duplicates"] == 0
    assert sum(s["acked"] for s in statuses) == 3 * per_process
    report("3-processes", events=3 * per_process, duplicates=state["duplicates"], requests=len(requests),
           overlapping_with_shared_ids=overlaps, seconds=round(elapsed, 2))


def test_stalled_owner_loses_its_rows_to_a_live_process(ingest, tmp_path, spawn, report):
    """A process stopped past its lease: another adopts and sends its rows; the
    stalled one, resumed, sends none of them (the owner rule, point 4)."""
    db = str(tmp_path / "stall.sqlite3")
    count = 40
    ingest.set_faults({"offline": True})
    options = {"lease_ms": 1000, "request_timeout_ms": 1000, "backoff_base_ms": 300, "backoff_max_ms": 600}
    stalled = spawn("record", db, ingest.url, str(count), "stalled", json.dumps(options))
    ids: list[str] = []
    _read_until(stalled, "flushing", ids)
    _wait(lambda: ingest.state()["requests_total"] >= 1, what="a failed request")
    # Stop it outside a transaction: a process stopped while it holds SQLite's
    # write lock blocks every writer of the file (docs/python.md, failure modes).
    for _ in range(50):
        os.kill(stalled.pid, signal.SIGSTOP)
        if _writable(db):
            break
        os.kill(stalled.pid, signal.SIGCONT)
        time.sleep(0.03)
    else:
        raise AssertionError("could not stop the child outside a transaction")
    try:
        ingest.set_faults({"offline": False})
        adopter = spawn("drain", db, ingest.url, json.dumps({"lease_ms": 1000}))
        adopter_status = json.loads(_read_until(adopter, "done", []).split(" ", 1)[1])
        assert adopter.wait(30) == 0
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    stalled_status = json.loads(_read_until(stalled, "done", []).split(" ", 1)[1])
    assert stalled.wait(30) == 0
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert adopter_status["acked"] == count
    # Resumed, it sends none of them: either it finds it owns nothing and stops,
    # or its next retry claims nothing (counted in lostToOthers).
    assert stalled_status["store"]["owned"] == 0 and 0 <= stalled_status["lostToOthers"] <= count
    # No two overlapping requests carry an event. A duplicate is still possible:
    # stopped after its request reached the server but before it read the ack,
    # the stalled process never deleted the rows, which the adopter then sent.
    assert _overlaps(state) == 0 and state["duplicates"] <= count
    report("stalled-owner", events=count, adopted=adopter_status["acked"], lost_to_others=stalled_status["lostToOthers"],
           duplicates=state["duplicates"])


def test_interpreter_exit_flushes_open_clients(ingest, tmp_path):
    """A script that records and simply ends: the atexit hook delivers."""
    import subprocess
    import sys
    from pathlib import Path

    db = str(tmp_path / "exit.sqlite3")
    code = (f"import revu\nc = revu.Client('test-key', host={ingest.url!r}, db_path={db!r}, flush_interval_ms=60000)\n"
            "ids = [c.record('at.exit', {'i': i}) for i in range(5)]\nprint(' '.join(ids))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "PYTHONPATH": str(root / "py_src")})
    assert {e["event_id"] for e in ingest.state()["events"]} == set(out.stdout.split())
    assert _rows(db) == 0
