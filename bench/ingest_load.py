"""Ingest service under load, on loopback. Prints figures; not a test.

    ./dev bench ingest [--seconds 10] [--connections 8] [--no-write]
    .venv/bin/python bench/ingest_load.py           (the same, after ./dev setup)

For each configuration (SQLite with 1 process; PostgreSQL with 1, 2 and 4
processes) it starts real `revu-ingest serve` processes on loopback ports
and a bounded asyncio load generator (a fixed time window, then it stops):
persistent HTTP/1.1 connections spread evenly over the processes, each
sending batches of 50 events of about 300 bytes, 10% of them duplicates
(re-sends of events the same connection sent in its previous batch). It
reports events/s (envelopes acknowledged, new events), request latency
p50/p99 as the client sees it, and CPU per process (server processes, all of
PostgreSQL, the load generator) as a share of one core.

The floor, in the same run and the same PostgreSQL: the same rows loaded
straight into the same table (created by the service's own migration) with
COPY, in one connection, 5,000 rows per transaction. The service's
PostgreSQL throughput is reported as a share of it. Between the two, the
service's own deduplicating INSERT sent straight from two connections
(statement_floor): the database's part of the work, without HTTP or Python.

PostgreSQL runs as a throwaway cluster (scripts/pg_throwaway.py) with its
durable defaults (fsync on, synchronous_commit on, full_page_writes on): an
event is acknowledged only after its commit is on disk. Two things make the
fresh cluster behave like one in service (PG_SETTINGS, prewarm_wal): WAL
room for the whole run (min_wal_size / max_wal_size, so no checkpoint is
forced mid-run) and WAL segments created before the run and recycled by a
CHECKPOINT before each configuration. A cluster in service reuses its
segments; a fresh one creates and zero-fills a new 16 MB segment every half
second under this load, and every commit waits about 50 ms each time (seen
as p99 ~55 ms against ~15 ms). The results are appended to bench/RESULTS.md
under "## Ingest service" (unless --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import pg_throwaway  # noqa: E402

SERVE = Path(sys.executable).parent / "revu-ingest"
BATCH = 50
DUPLICATES_PER_BATCH = 5  # 10%
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_ARGS: list[str] = []  # extra `revu-ingest serve` options (--group-writes)
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Ingest service"

_PAD = "x" * 96
_REST = (
    '","event":"page_view","properties":{"path":"/pricing/plans/pro","referrer":"https://www.example.com/blog",'
    '"title":"Pricing","plan":"pro","seats":3,"flag":true,"note":"' + _PAD + '"},'
    '"created_at":1700000000000,"sent_at":1700000000500}'
).encode()


def envelope(event_id: str) -> bytes:
    return b'{"event_id":"' + event_id.encode() + _REST


ENVELOPE_BYTES = len(envelope("bench-00-000000000000"))


# ---- CPU ----------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                out.append(int(entry.name))
    return out


def postgres_pids(directory: str) -> list[int]:
    pidfile = Path(directory) / "data" / "postmaster.pid"
    master = int(pidfile.read_text().split()[0])
    return [master] + children_of(master)


# ---- PostgreSQL -----------------------------------------------------------------

PG_SETTINGS = {"min_wal_size": "2GB", "max_wal_size": "4GB"}
PREWARM_SEGMENTS = 96  # 1.5 GB of 16 MB WAL segments: more than one configuration writes


def prewarm_wal(pg_url: str) -> float:
    """Create PREWARM_SEGMENTS WAL segments (a tiny write and a segment
    switch each) and recycle them with a CHECKPOINT; returns seconds."""
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_prewarm (x int)")
        for _ in range(PREWARM_SEGMENTS):
            conn.execute("INSERT INTO wal_prewarm VALUES (1)")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("DROP TABLE wal_prewarm")
        conn.execute("CHECKPOINT")
    return time.monotonic() - t0


def checkpoint(pg_url: str) -> None:
    """Recycle the WAL segments the last configuration used."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# ---- servers ------------------------------------------------------------------


def start_servers(db_url: str, count: int, workdir: Path) -> list[tuple[subprocess.Popen, int]]:
    procs = []
    for i in range(count):
        log = workdir / f"serve-{i}-{time.monotonic_ns()}.log"
        out = open(log, "wb")
        popen = subprocess.Popen(
            [str(SERVE), "serve", "--db", db_url, "--port", "0", "--no-access-log", "--log-level", "warning",
             "--pool-min", "4", "--pool-max", "8", *SERVER_ARGS],
            stdout=subprocess.DEVNULL, stderr=out,
        )
        procs.append((popen, log))
    result = []
    deadline = time.monotonic() + 60
    for popen, log in procs:
        port = 0
        while not port:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"revu-ingest serve failed: {log.read_text()}")
            time.sleep(0.05)
            # --log-level warning hides the "listening" line: find the port from /proc.
            port = listening_port(popen.pid)
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        result.append((popen, port))
    return result


def listening_port(pid: int) -> int:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
            return int(parts[1].split(":")[1], 16)
    return 0


def stop_servers(procs: list[tuple[subprocess.Popen, int]]) -> None:
    for popen, _ in procs:
        popen.send_signal(signal.SIGTERM)
    for popen, _ in procs:
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            popen.kill()


# ---- load ---------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: float
    requests: int
    envelopes: int
    new_events: int
    latencies_ms: list[float]
    cpu: dict[str, float]  # share of one core
    errors: int

    @property
    def events_per_s(self) -> float:
        return self.envelopes / self.seconds

    @property
    def events_per_cpu_s(self) -> float:
        """Acknowledged envelopes per CPU-second of the servers and PostgreSQL:
        what the service costs, whatever else the machine is running."""
        busy = sum(v for k, v in self.cpu.items() if k != "loadgen")
        return self.events_per_s / busy if busy else float("nan")

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


async def _connection(port: int, tag: str, start_at: float, stop_at: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /v1/behavior/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    previous: list[str] = []
    n = 0
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < stop_at:
            ids = [f"{tag}-{n + i:09d}" for i in range(BATCH - (DUPLICATES_PER_BATCH if previous else 0))]
            n += len(ids)
            sent = ids + previous[:DUPLICATES_PER_BATCH]
            body = b'{"api_key":"bench","batch":[' + b",".join(envelope(i) for i in sent) + b"]}"
            t0 = loop.time()
            writer.write(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            t1 = loop.time()
            if t0 >= start_at and t1 <= stop_at:
                if status == 200:
                    out["requests"] += 1
                    out["envelopes"] += len(sent)
                    out["new"] += len(ids)
                    out["lat"].append((t1 - t0) * 1000)
                else:
                    out["errors"] += 1
            previous = ids
    finally:
        writer.close()


async def _drive(ports: list[int], connections: int, warmup_s: float, seconds: float, tag: str) -> dict:
    loop = asyncio.get_running_loop()
    start_at = loop.time() + warmup_s
    stop_at = start_at + seconds
    out = {"requests": 0, "envelopes": 0, "new": 0, "lat": [], "errors": 0}
    tasks = [
        _connection(ports[c % len(ports)], f"{tag}-{c}", start_at, stop_at, out) for c in range(connections)
    ]
    await asyncio.gather(*tasks)
    return out


def run_config(name: str, db_url: str, processes: int, args: argparse.Namespace, workdir: Path,
               pg_dir: str | None) -> Result:
    procs = start_servers(db_url, processes, workdir)
    try:
        ports = [port for _, port in procs]
        server_pids = [p.pid for p, _ in procs]

        def snapshot() -> dict[str, int]:
            snap = {f"server{i + 1}": cpu_ticks(pid) for i, pid in enumerate(server_pids)}
            if pg_dir:
                snap["postgres"] = sum(cpu_ticks(pid) for pid in postgres_pids(pg_dir))
            snap["loadgen"] = cpu_ticks(os.getpid())
            return snap

        tag = f"{name.replace(' ', '')}-{time.monotonic_ns()}"
        loop = asyncio.new_event_loop()
        try:
            # CPU is sampled over the measured window only (after the warm-up).
            task = loop.create_task(_drive(ports, args.connections, args.warmup, args.seconds, tag))
            loop.run_until_complete(asyncio.sleep(args.warmup))
            before, t0 = snapshot(), time.monotonic()
            loop.run_until_complete(asyncio.sleep(args.seconds))
            after, t1 = snapshot(), time.monotonic()
            out = loop.run_until_complete(task)
        finally:
            loop.close()
        wall = t1 - t0
        cpu = {k: (after[k] - before.get(k, 0)) / CLK_TCK / wall for k in after}
        return Result(name, args.seconds, out["requests"], out["envelopes"], out["new"], out["lat"], cpu,
                      out["errors"])
    finally:
        stop_servers(procs)


# ---- the COPY floor ---------------------------------------------------------------


def migrated_schema(pg_url: str, schema: str) -> str:
    """A fresh schema with the service's tables (its own migration); its URL."""
    import psycopg

    sys.path.insert(0, str(ROOT / "ingest" / "src"))
    from revu_ingest.storage import make_storage

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{pg_url}&options=-csearch_path%3D{schema}"
    storage = make_storage(url)

    async def migrate() -> None:
        await storage.open()
        await storage.close()

    asyncio.run(migrate())
    return url


def copy_floor(pg_url: str, rows: int, per_transaction: int, pg_dir: str) -> tuple[float, float]:
    """(rows/s, rows per CPU-second of PostgreSQL + this client) for COPY of
    ``rows`` rows into the service's events table, in a fresh schema the
    service migrated."""
    import psycopg

    url = migrated_schema(pg_url, f"copy_floor_{per_transaction}")
    now = int(time.time() * 1000)
    data = [
        (f"copy-{per_transaction}-{i:09d}", "bench", "page_view", None, 1700000000000, now, None, 1,
         envelope(f"copy-{per_transaction}-{i:09d}").decode())
        for i in range(rows)
    ]
    with psycopg.connect(url) as conn:
        cpu0 = sum(cpu_ticks(pid) for pid in postgres_pids(pg_dir)) + cpu_ticks(os.getpid())
        t0 = time.perf_counter()
        for start in range(0, rows, per_transaction):
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY events (event_id, api_key, event, stream, created_at, received_at_ms, request_seq, "
                    "receipts, envelope) FROM STDIN"
                ) as copy:
                    for row in data[start:start + per_transaction]:
                        copy.write_row(row)
            conn.commit()
        seconds = time.perf_counter() - t0
        cpu_s = (sum(cpu_ticks(pid) for pid in postgres_pids(pg_dir)) + cpu_ticks(os.getpid()) - cpu0) / CLK_TCK
        count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == rows, (count, rows)
    return rows / seconds, rows / max(cpu_s, 1e-9)


def statement_floor(pg_url: str, rows: int, pg_dir: str, connections: int = 2, per_statement: int = 200
                    ) -> tuple[float, float]:
    """(envelopes/s, envelopes per CPU-second of PostgreSQL + this client)
    for the service's own deduplicating INSERT (storage/_postgres.py), sent
    straight from ``connections`` connections in statements of
    ``per_statement`` envelopes, 10% of them re-sent, with no HTTP and no
    service: what the database's part of the service's work costs. The
    parameters are built before the clock starts."""
    import threading

    import psycopg

    sys.path.insert(0, str(ROOT / "ingest" / "src"))
    from revu_ingest.storage._postgres import _INSERT_EVENTS, ENVELOPE_SEPARATOR

    url = migrated_schema(pg_url, "statement_floor")
    now = int(time.time() * 1000)
    resend = per_statement * DUPLICATES_PER_BATCH // BATCH
    work: list[list[tuple[str, str]]] = [[] for _ in range(connections)]
    sent = 0
    for c in range(connections):
        previous: list[str] = []
        n = 0
        while sent < rows:
            ids = [f"stmt-{c}-{n + i:09d}" for i in range(per_statement - (resend if previous else 0))]
            n += len(ids)
            batch = ids + previous[:resend]
            previous = ids
            meta = json.dumps([[i, "page_view", None, 1700000000000, 1, "bench", now, None] for i in batch])
            work[c].append((meta, ENVELOPE_SEPARATOR.join(envelope(i).decode() for i in batch)))
            sent += len(batch)
            if sent >= rows * (c + 1) // connections:
                break
    conns = [psycopg.connect(url, autocommit=True) for _ in range(connections)]
    try:
        def run(c: int) -> None:
            for params in work[c]:
                conns[c].execute(_INSERT_EVENTS, params).fetchall()

        threads = [threading.Thread(target=run, args=(c,)) for c in range(connections)]
        cpu0 = sum(cpu_ticks(pid) for pid in postgres_pids(pg_dir)) + cpu_ticks(os.getpid())
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        cpu_s = (sum(cpu_ticks(pid) for pid in postgres_pids(pg_dir)) + cpu_ticks(os.getpid()) - cpu0) / CLK_TCK
        total = conns[0].execute("SELECT sum(receipts) FROM events").fetchone()[0]
    finally:
        for conn in conns:
            conn.close()
    assert total == sent, (total, sent)
    return sent / seconds, sent / max(cpu_s, 1e-9)


# ---- report -----------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average before the run {load[0]:.2f}")


def report(results: list[Result], floor: tuple[float, float], floor50: tuple[float, float],
           stmt: tuple[float, float], pg_version: str, args: argparse.Namespace) -> str:
    lines = []
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines.append(f"### {stamp}")
    lines.append("")
    lines.append(f"Machine: {machine()}. {pg_version}, durable defaults (fsync on, synchronous_commit on, "
                 f"full_page_writes on), min_wal_size {PG_SETTINGS['min_wal_size']}, max_wal_size "
                 f"{PG_SETTINGS['max_wal_size']}, WAL segments pre-created and recycled by a CHECKPOINT before "
                 f"each configuration (as in a cluster in service); SQLite WAL, synchronous=NORMAL.")
    lines.append(f"Load: {args.connections} keep-alive connections spread over the processes, batches of {BATCH} "
                 f"events of {ENVELOPE_BYTES} bytes, {DUPLICATES_PER_BATCH * 100 // BATCH}% duplicates, "
                 f"{args.warmup:g} s warm-up then {args.seconds:g} s measured; load generator and servers share the machine.")
    lines.append("")
    lines.append("| configuration | events/s (acked envelopes) | new events/s | requests/s | p50 ms | p99 ms | "
                 "errors | CPU (share of one core) | events per CPU-second | vs COPY floor (wall / CPU) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in results:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items())
        ratio = (f"{r.events_per_s / floor[0]:.0%} / {r.events_per_cpu_s / floor[1]:.0%}"
                 if "PostgreSQL" in r.name else "n/a")
        lines.append(
            f"| {r.name} | {r.events_per_s:,.0f} | {r.new_events / r.seconds:,.0f} | {r.requests / r.seconds:,.0f} | "
            f"{r.pct(0.50):.1f} | {r.pct(0.99):.1f} | {r.errors} | {cpu} | {r.events_per_cpu_s:,.0f} | {ratio} |"
        )
    lines.append("")
    lines.append(f"COPY floor (same rows, same table and indexes, one connection): {floor[0]:,.0f} rows/s "
                 f"({floor[1]:,.0f} rows per CPU-second of PostgreSQL and the loader) with {args.copy_rows:,} rows in "
                 f"transactions of 5,000; {floor50[0]:,.0f} rows/s in transactions of {BATCH} (one COPY per batch, "
                 f"one connection). \"wall\" compares events/s with COPY rows/s in "
                 f"the same run; \"CPU\" compares what each costs per CPU-second, which holds whatever else the "
                 f"machine runs.")
    lines.append("")
    lines.append(f"The service's own deduplicating INSERT, sent straight to PostgreSQL (no HTTP, no service; 2 "
                 f"connections, statements of 200 envelopes, 10% re-sent): {stmt[0]:,.0f} envelopes/s "
                 f"({stmt[0] / floor[0]:.0%} of COPY), {stmt[1]:,.0f} per CPU-second ({stmt[1] / floor[1]:.0%} of "
                 f"COPY's). That is the database's share of the work alone; the service adds HTTP, JSON and "
                 f"validation on the same two cores.")
    lines.append("")
    return "\n".join(lines)


def write_results(section_body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    intro = ("Written by `./dev bench ingest` (bench/ingest_load.py). Newest run first. Targets on the project's "
             "2-core machine: >= 20,000 events/s through the service with PostgreSQL, p99 <= 50 ms, >= 50% of "
             "the COPY floor.\n\n")
    if HEADING in text:
        start = text.index(HEADING)
        rest = text[start + len(HEADING):]
        nxt = re.search(r"(?m)^## ", rest)
        end = start + len(HEADING) + (nxt.start() if nxt else len(rest))
        old = text[start + len(HEADING):end].strip("\n")
        old = old.replace(intro.strip(), "").strip("\n")
        new = f"{HEADING}\n\n{intro}{section_body}\n{old}\n\n" if old else f"{HEADING}\n\n{intro}{section_body}\n"
        text = text[:start] + new + text[end:].lstrip("\n")
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{intro}{section_body}\n"
    RESULTS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ingest service load benchmark (figures, not a test)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per configuration")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8,
                        help="concurrent keep-alive connections (closed loop: each waits for its reply)")
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--only", default="", help="comma list of: sqlite1,pg1,pg2,pg4")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--group-writes", type=int, default=None,
                        help="revu-ingest serve --group-writes for every server (default: the service's default)")
    args = parser.parse_args(argv)
    if args.group_writes is not None:
        SERVER_ARGS[:] = ["--group-writes", str(args.group_writes)]
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    pg_dir = tempfile.mkdtemp(prefix="revu-pg-bench-")
    workdir = Path(tempfile.mkdtemp(prefix="revu-ingest-bench-"))
    results: list[Result] = []
    try:
        print(f"starting a throwaway PostgreSQL in {pg_dir} ...", flush=True)
        pg_url = pg_throwaway.start(pg_dir, durable=True, settings=PG_SETTINGS)
        print(f"  WAL segments pre-created and recycled in {prewarm_wal(pg_url):.1f} s", flush=True)
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            pg_version = "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0].split()[0]
        configs = [
            ("sqlite1", "SQLite, 1 process", "sqlite:///" + str(workdir / "bench.sqlite3"), 1),
            ("pg1", "PostgreSQL, 1 process", None, 1),
            ("pg2", "PostgreSQL, 2 processes", None, 2),
            ("pg4", "PostgreSQL, 4 processes", None, 4),
        ]
        only = set(filter(None, args.only.split(",")))
        for key, name, url, processes in configs:
            if only and key not in only:
                continue
            if url is None:
                schema = f"bench_{key}"
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                    conn.execute(f"CREATE SCHEMA {schema}")
                url = f"{pg_url}&options=-csearch_path%3D{schema}"
            checkpoint(pg_url)
            print(f"{name} ...", flush=True)
            r = run_config(name, url, processes, args, workdir, pg_dir if url.startswith("postgres") else None)
            results.append(r)
            print(f"  {r.events_per_s:,.0f} events/s, p50 {r.pct(0.5):.1f} ms, p99 {r.pct(0.99):.1f} ms, "
                  f"errors {r.errors}, cpu {({k: round(v, 2) for k, v in r.cpu.items()})}", flush=True)
        print("COPY floor ...", flush=True)
        checkpoint(pg_url)
        floor = copy_floor(pg_url, args.copy_rows, 5000, pg_dir)
        checkpoint(pg_url)
        floor50 = copy_floor(pg_url, min(args.copy_rows, 50_000), BATCH, pg_dir)
        print(f"  {floor[0]:,.0f} rows/s ({floor[1]:,.0f} per CPU-second) in transactions of 5,000; "
              f"{floor50[0]:,.0f} rows/s in transactions of {BATCH}")
        print("the service's INSERT alone ...", flush=True)
        checkpoint(pg_url)
        stmt = statement_floor(pg_url, min(args.copy_rows, 100_000), pg_dir)
        print(f"  {stmt[0]:,.0f} envelopes/s ({stmt[1]:,.0f} per CPU-second)")
    finally:
        pg_throwaway.stop(pg_dir)
    text = report(results, floor, floor50, stmt, pg_version, args)
    print()
    print(text)
    if not args.no_write:
        write_results(text)
        print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
