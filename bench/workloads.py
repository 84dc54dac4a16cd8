"""The workloads of the SDK comparison. Each one takes a fresh browser context,
runs one scenario for one SDK variant and returns flat figures
(``{"metric": number}``); see bench/README.md for what each figure means.

Two kinds of "offline" (``Session.go_offline``), named in every result:

* ``ingest``: only the ingest is unreachable (the sink, or the reference
  server, closes every request at once, beacons included); navigator.onLine
  stays true and no `online` event fires when it comes back, as in an ingest
  outage, a captive portal or a blocked host. SDKs retry on their own timers.
* ``device``: the browser is offline as well: every request fails
  (``context.set_offline``), navigator.onLine is false and `offline` /
  `online` fire, as when a laptop loses and regains its connection. The sink
  is offline too, because Chromium lets unload beacons through its emulation.

In both, the page's own origin keeps working for reloads: a reload is a
navigation to the same URL, served from the HTTP cache.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.harness import VARIANTS, Bench, Session


@dataclass(frozen=True)
class Params:
    """Sizes, trials and waits of a run (FULL for ./dev bench, QUICK for --quick)."""

    trials: int = 3
    heavy_trials: int = 1  # for the largest enqueue_ns ("queued": enqueue, memory, drain)
    enqueue_ns: tuple[int, ...] = (1_000, 10_000)  # the largest also gets memory + drain ("queued")
    crash_fallback_n: int = 2_000
    depths: tuple[int, ...] = (100, 1_000, 10_000)
    depth_rounds: int = 5
    depth_calls: int = 100
    survival_n: int = 500
    unload_n: int = 30
    longtask_window_ms: int = 10_000
    # Waits. "quiet": no new event for that long once one arrived; "first":
    # give up when not a single event arrived that long after going online.
    quiet_cap_s: float = 20.0  # main thread idle after an enqueue loop
    drain_quiet_s: float = 20.0
    drain_cap_s: float = 240.0
    survival_quiet_s: float = 10.0
    # revu's unload beacon may carry the events recorded offline; the next
    # page waits until that beacon can no longer be in flight (12 s) before
    # sending them again, so a small run sees nothing before then.
    survival_first_s: float = 20.0
    survival_cap_s: float = 90.0
    unload_quiet_s: float = 3.0
    unload_first_s: float = 5.0
    unload_cap_s: float = 10.0
    ua_quiet_s: float = 5.0


FULL = Params()
QUICK = Params(trials=1, heavy_trials=1, enqueue_ns=(100, 300), crash_fallback_n=100, depths=(10, 50, 100), depth_rounds=3,
               depth_calls=10, survival_n=20, unload_n=5, longtask_window_ms=1_000, quiet_cap_s=6.0,
               drain_quiet_s=4.0, drain_cap_s=60.0, survival_quiet_s=3.0, survival_first_s=20.0,
               survival_cap_s=30.0, unload_quiet_s=2.0, unload_first_s=3.0, unload_cap_s=5.0, ua_quiet_s=3.0)

# revu's maxQueue default; workloads above it raise the cap (and say so).
REVU_DEFAULT_MAX_QUEUE = 1_000


def revu_options(variant: str, n: int) -> dict[str, Any]:
    """Per-workload options: only revu's maxQueue, and only when n exceeds it."""
    if variant == "revu" and n > REVU_DEFAULT_MAX_QUEUE:
        return {"maxQueue": 2 * n}
    return {}


def _run_id() -> str:
    return uuid.uuid4().hex[:8]


def _bytes_since(bench: Bench, mark: int) -> dict[str, Any]:
    """What the static server sent since ``mark``, bench pages excluded."""
    entries = [e for e in bench.assets.since(mark) if not e["path"].startswith("/page/")]
    return {
        "transfer_bytes": sum(e["body_bytes"] + e["header_bytes"] for e in entries),
        "body_bytes": sum(e["body_bytes"] for e in entries),
        "uncompressed_bytes": sum(e["file_bytes"] for e in entries if e["status"] == 200),
        "requests": len(entries),
        "files": sorted({f"{e['path']} {e['status']} {e['encoding'] or 'identity'}" for e in entries}),
    }


def _long_tasks(longtasks: list[list[float]], window_ms: float) -> dict[str, float]:
    inside = [d for start, d in longtasks if start < window_ms]
    return {"longest_task_ms": max(inside, default=0.0), "long_task_total_ms": sum(inside),
            "long_tasks": len(inside)}


def _sleep_until_page_time(session: Session, page_ms: float) -> None:
    now = session.page.evaluate("performance.now()")
    if now < page_ms:
        time.sleep((page_ms - now) / 1000 + 0.05)


# ----------------------------------------------------------------------------- start-up and memory after init


def startup(bench: Bench, variant: str, p: Params) -> dict[str, Any]:
    """Cold load, then the same page again from the HTTP cache, each watched
    for ``longtask_window_ms``; memory after init at the end of the cold window."""
    s = bench.session(variant)
    try:
        out: dict[str, Any] = {}
        for phase in ("cold", "cached"):
            mark = bench.assets.mark()
            s.goto(s.url())
            t = s.wait_ready()
            _sleep_until_page_time(s, p.longtask_window_ms)
            t = s.timings()
            out[f"{phase}.ready_ms"] = t["ready"]
            out[f"{phase}.usable_ms"] = t["usable"]
            out.update({f"{phase}.{k}": v for k, v in _long_tasks(t["longtasks"], p.longtask_window_ms).items()})
            wire = _bytes_since(bench, mark)
            out.update({f"{phase}.{k}": v for k, v in wire.items() if k != "files"})
            out[f"{phase}.files"] = wire["files"]
            if t["errors"]:
                out[f"{phase}.page_errors"] = t["errors"][:5]
            if phase == "cold":
                out.update({f"memory_init.{k}": v for k, v in s.memory().items()})
        return out
    finally:
        s.close()


# ----------------------------------------------------------------------------- enqueue (+ memory and drain at n)


ENQUEUE_OFFLINE = "device"


def enqueue(bench: Bench, variant: str, n: int, p: Params, drain: bool) -> dict[str, Any]:
    """n back-to-back track calls while offline ("device"): the loop's cost
    per call, then main-thread task time and renderer CPU until the main
    thread is idle. With ``drain``: memory with n queued, then online and the
    drain."""
    sdk = VARIANTS[variant]["sink_sdk"]
    bench.sink.reset()
    s = bench.session(variant)
    try:
        s.goto(s.url(options=revu_options(variant, n)))
        s.wait_ready()
        s.go_offline(ENQUEUE_OFFLINE, bench.sink.set_offline)
        time.sleep(1.0)
        base = s.metrics()
        base_t = time.monotonic()
        loop_ms = s.record(n, _run_id())
        quiet = s.wait_quiet(base, base_t, cap_s=p.quiet_cap_s)
        s.check()
        out: dict[str, Any] = {
            "n": n,
            "sync_us_per_call": loop_ms * 1000 / n,
            "main_thread_us_per_call": quiet["busy_s"] * 1e6 / n,
            "renderer_cpu_us_per_call": quiet["cpu_s"] * 1e6 / n,
            "settle_s": quiet["elapsed_s"],
            "settled": quiet["settled"],
        }
        status = s.status()
        if status:
            out["sdk_status"] = status
        if not drain:
            return out
        out.update({f"memory_queued.{k}": v for k, v in s.memory().items()})
        before = bench.sink.snapshot(sdk)
        m0 = s.metrics()
        t_online = s.go_online(ENQUEUE_OFFLINE, bench.sink.set_offline)
        snap = bench.sink.wait_settled(sdk, n, quiet_s=p.drain_quiet_s, cap_s=p.drain_cap_s, since=t_online)
        s.check()
        m1 = s.metrics()
        last = snap["last_new_at"]
        out.update({
            "drain.time_to_last_s": (last - t_online) if last and last > t_online else None,
            "drain.posts": snap["posts"] - before["posts"],
            "drain.preflights": snap["preflights"] - before["preflights"],
            "drain.request_bytes": snap["request_bytes"] - before["request_bytes"],
            "drain.kept": snap["bench_unique"],
            "drain.duplicates": snap["bench_duplicates"],
            "drain.max_events_per_post": snap["max_events_per_request"],
            "drain.main_thread_ms": (s.busy_s(m1) - s.busy_s(m0)) * 1000,
            "drain.settled_by": snap["settled_by"],
            "drain.refused_while_offline": before["refused"],
        })
        if snap["extra_unique"]:
            out["drain.extra_events"] = snap["extra_names"]
        return out
    finally:
        s.close()


# ----------------------------------------------------------------------------- record() at depth (revu only)

def depth(bench: Bench, p: Params) -> dict[str, Any]:
    """revu.record() cost at queue depths, before the core is ready (measured
    by the page's last script, while the core loads) and after."""
    variant = "revu"
    out: dict[str, Any] = {}
    total = max(p.depths) + p.depth_rounds * p.depth_calls * len(p.depths)
    options = revu_options(variant, total)
    run = _run_id()
    # Before ready. A first visit lets the core publish the raised maxQueue
    # (before it runs, the shim applies the cap the core last published); the
    # second visit measures from its last script, before the core is live.
    bench.sink.reset()
    bench.sink.set_offline(True)  # "ingest" offline: the queue must not drain
    s = bench.session(variant)
    try:
        if options:
            s.goto(s.url(options=options))
            s.wait_ready()
        at_start = {"fn": "depths", "args": [list(p.depths), p.depth_rounds, p.depth_calls, run]}
        s.goto(s.url(options=options, at_start=at_start))
        rows = s.page.evaluate("window.__benchAtStart")
        if isinstance(rows, dict) and rows.get("error"):
            raise RuntimeError(rows["error"])
        for row in rows:
            key = f"before_ready.{row['depth']}"
            out.update({f"{key}.record_us": row["record_us"], f"{key}.setitem_floor_us": row["setitem_floor_us"],
                        f"{key}.queued": row["queued"], f"{key}.core_ready": row["ready"]})
    finally:
        s.close()
    # After ready: fill, let the core catch up, then measure.
    bench.sink.reset()
    bench.sink.set_offline(True)
    s = bench.session(variant)
    try:
        s.goto(s.url(options=options))
        s.wait_ready()
        recorded = 0
        for d in p.depths:
            if recorded < d:
                s.record(d - recorded, run, start=recorded)
                recorded = d
            s.wait_quiet(s.metrics(), time.monotonic(), cap_s=p.quiet_cap_s)
            row = s.page.evaluate(
                """([rounds, calls, run, start]) => {
                    let i = start;
                    const st = benchSdk.status();
                    return {queued: st.queued, ready: st.ready, ...__benchMeasure.record(rounds, calls, run, () => i++)};
                }""", [p.depth_rounds, p.depth_calls, run, 10_000_000 + recorded])
            recorded += p.depth_rounds * p.depth_calls
            key = f"after_ready.{d}"
            out.update({f"{key}.record_us": row["record_us"], f"{key}.setitem_floor_us": row["setitem_floor_us"],
                        f"{key}.queued": row["queued"], f"{key}.core_ready": row["ready"]})
        out["sdk_status"] = s.status()
        return out
    finally:
        s.close()


# ----------------------------------------------------------------------------- survival


def survival(bench: Bench, variant: str, mode: str, p: Params) -> dict[str, Any]:
    """n events offline (``mode``), a reload 1 s later (still offline), the
    SDK ready again, then online."""
    sdk = VARIANTS[variant]["sink_sdk"]
    n = p.survival_n
    bench.sink.reset()
    s = bench.session(variant)
    try:
        url = s.url(options=revu_options(variant, n))
        s.goto(url)
        s.wait_ready()
        s.go_offline(mode, bench.sink.set_offline)
        time.sleep(0.5)
        s.record(n, _run_id())
        time.sleep(1.0)
        s.reload(url)
        s.wait_ready()
        t_online = s.go_online(mode, bench.sink.set_offline)
        snap = bench.sink.wait_settled(sdk, n, quiet_s=p.survival_quiet_s, cap_s=p.survival_cap_s, since=t_online,
                                       first_within_s=p.survival_first_s)
        s.check()
        last = snap["last_new_at"]
        out = {"sent": n, "unique": snap["bench_unique"], "duplicates": snap["bench_duplicates"],
               "time_to_last_s": (last - t_online) if last and last > t_online else None,
               "settled_by": snap["settled_by"], "refused_while_offline": snap["refused"]}
        if snap["extra_unique"]:
            out["extra_events"] = snap["extra_names"]
        return out
    finally:
        s.close()


def survival_reference(bench: Bench, p: Params) -> dict[str, Any]:
    """The survival scenario ("ingest" offline) for revu against the reference
    ingest server (demo.ingest_server.IngestServer, its ``offline`` fault
    switch), as a cross-check of the sink's counts."""
    n = p.survival_n
    ingest = bench.ingest
    ingest.reset()

    def ingest_down(down: bool) -> None:
        ingest.set_faults({"offline": down})

    s = bench.session("revu")
    try:
        url = s.url(sink=ingest.url)
        s.goto(url)
        s.wait_ready()
        s.go_offline("ingest", ingest_down)
        time.sleep(0.5)
        s.record(n, _run_id())
        time.sleep(1.0)
        s.reload(url)
        s.wait_ready()
        t_online = s.go_online("ingest", ingest_down)
        try:
            state = ingest.wait_until(lambda st: st["unique"] >= n, timeout_s=p.survival_cap_s)
        except TimeoutError:
            state = ingest.state()
        return {"sent": n, "unique": state["unique"], "duplicates": state["duplicates"],
                "time_to_all_s": time.monotonic() - t_online if state["unique"] >= n else None,
                "requests": state["requests_total"]}
    finally:
        s.close()


# ----------------------------------------------------------------------------- unload


def unload(bench: Bench, variant: str, mode: str, p: Params) -> dict[str, Any]:
    """n events, then at once the tab is closed (``close``) or navigates to
    another page of the site (``navigate``); events received afterwards (until
    ``unload_cap_s``; nothing more can come once the page is gone and its
    beacons and keepalive requests have landed)."""
    sdk = VARIANTS[variant]["sink_sdk"]
    n = p.unload_n
    bench.sink.reset()
    s = bench.session(variant)
    try:
        s.goto(s.url())
        s.wait_ready()
        time.sleep(0.5)
        s.record(n, _run_id())
        t_leave = time.monotonic()
        if mode == "close":
            s.page.close(run_before_unload=True)
        else:
            s.page.goto(f"{bench.assets.url}/page/blank.html", wait_until="load")
        snap = bench.sink.wait_settled(sdk, n, quiet_s=p.unload_quiet_s, cap_s=p.unload_cap_s, since=t_leave,
                                       first_within_s=p.unload_first_s)
        return {"sent": n, "received": snap["bench_unique"], "duplicates": snap["bench_duplicates"],
                "posts": snap["posts"]}
    finally:
        s.close()


# ----------------------------------------------------------------------------- the bot filter check


def ua_check(bench: Bench, variant: str, p: Params) -> dict[str, Any]:
    """The SDK as configured, under Chromium's own HeadlessChrome user agent:
    how many of 20 events recorded online arrive."""
    sdk = VARIANTS[variant]["sink_sdk"]
    bench.sink.reset()
    s = bench.session(variant, headless_ua=True)
    try:
        s.goto(s.url())
        s.wait_ready()
        s.record(20, _run_id())
        snap = bench.sink.wait_settled(sdk, 20, quiet_s=p.ua_quiet_s, cap_s=3 * p.ua_quiet_s, since=time.monotonic(),
                                       first_within_s=p.ua_quiet_s)
        return {"sent": 20, "received": snap["bench_unique"]}
    finally:
        s.close()
