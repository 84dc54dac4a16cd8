"""Three tabs of one origin: how many Pyodide instances run, and what each
tab's renderer costs beside a page without revu.

    .venv/bin/python bench/tabs.py [--rounds 3]

One headless Chromium, one browser context (tabs of one origin share it, as in
a visitor's browser). Per round: three revu tabs are opened one after the other, then a blank
page (no SDK); once the leader is ready
and the followers see it, every renderer is garbage-collected (CDP, twice) and
its private memory (USS, ``/proc/<pid>/smaps_rollup``) read. Chromium gives
each tab its own renderer process here, and a dedicated Worker lives in its
page's renderer, so a leader's renderer includes its core.

Pyodide instances are counted from the pages themselves: a tab's revu reports
``status().role``; only a leader creates the core's Worker, and Playwright
lists every page's Workers (``page.workers``).

A benchmark, not a test: it prints figures (median over rounds) and fails only
if a page does not start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Bench, _cpu_ticks, our_renderers, process_memory, run_build  # noqa: E402


def renderer_of(page, known: set[int]) -> int | None:
    """The renderer process of ``page``: the one whose CPU time grows while it spins."""
    pids = [p for p in our_renderers() if p not in known]
    before = {pid: _cpu_ticks(pid) for pid in pids}
    page.evaluate("() => { const t = performance.now(); while (performance.now() - t < 300) {} }")
    deltas = {pid: _cpu_ticks(pid) - before[pid] for pid in pids}
    if not deltas:
        return None
    best = max(deltas, key=deltas.get)
    return best if deltas[best] > 0 else None


def private_mib(page, cdp, pid: int) -> float:
    for _ in range(2):
        cdp.send("HeapProfiler.collectGarbage")
    time.sleep(0.3)
    return process_memory(pid)["private_mib"]


def one_round(bench: Bench) -> dict:
    context = bench.browser.new_context()
    try:
        known: set[int] = set()
        cfg = {"sink": bench.ingest.url, "variant": "revu", "options": {}}
        url = f"{bench.assets.url}/page/revu.html?cfg={json.dumps(cfg, separators=(',', ':'))}"
        tabs = []
        for _ in range(3):
            page = context.new_page()
            page.goto(url, timeout=90_000)
            page.wait_for_function("() => window.revu && revu.status().ready === true", timeout=90_000, polling=100)
            tabs.append(page)
        # The page without revu, in the same context, opened last (a renderer
        # started first can be the context's spare one, with other costs).
        blank = context.new_page()
        blank.goto(f"{bench.assets.url}/page/blank.html")
        time.sleep(2.0)  # let start-up garbage go
        blank_pid = renderer_of(blank, known)
        known.add(blank_pid)
        out = {"blank_mib": private_mib(blank, context.new_cdp_session(blank), blank_pid), "tabs": []}
        for page in tabs:
            pid = renderer_of(page, known)
            known.add(pid)
            st = page.evaluate("revu.status()")
            out["tabs"].append({"role": st.get("role"), "workers": len(page.workers),
                                "private_mib": private_mib(page, context.new_cdp_session(page), pid)})
        return out
    finally:
        context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bench = Bench(log=lambda *a: print("[bench]", *a, file=sys.stderr))
    run_build(bench.log)
    bench.start()
    try:
        rounds = [one_round(bench) for _ in range(args.rounds)]
    finally:
        bench.stop()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    blank = statistics.median(r["blank_mib"] for r in rounds)
    print(f"# three tabs of one origin ({args.rounds} rounds, load average {' '.join(load)})\n")
    print("| tab | role | core Workers | renderer private MiB (median) | vs a page without revu |")
    print("| --- | --- | ---: | ---: | ---: |")
    print(f"| blank page | – | 0 | {blank:.1f} | – |")
    for i in range(3):
        roles = {r["tabs"][i]["role"] for r in rounds}
        workers = statistics.median(r["tabs"][i]["workers"] for r in rounds)
        mib = statistics.median(r["tabs"][i]["private_mib"] for r in rounds)
        print(f"| tab {i + 1} | {'/'.join(sorted(map(str, roles)))} | {workers:g} | {mib:.1f} | {mib - blank:+.1f} |")
    pyodides = [sum(t["workers"] for t in r["tabs"]) for r in rounds]
    print(f"\ncore Workers (Pyodide instances) across the three tabs, per round: {pyodides}")
    print(json.dumps(rounds))


if __name__ == "__main__":
    main()
