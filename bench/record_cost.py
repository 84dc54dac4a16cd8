"""record() cost against queue depth, in headless Chromium. Prints figures.

Compares, in the same run and page:
  * revu.record() (envelope + one localStorage.setItem per event, before Pyodide and after),
  * a bare localStorage.setItem of a same-sized string (the floor),
  * "rewrite the whole queue array" persistence (one key holding a JSON array,
    read-modify-write per event: the pattern of SDKs that persist their queue as a
    single value), at the same depths.

Usage: .venv/bin/python bench/record_cost.py   (after ./dev build)
Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Depths stay under the first-visit maxQueue (1000) that applies before the core runs.
DEPTHS = [0, 300, 600, 900]
SAMPLES = 20

MEASURE = """
async ([depths, samples]) => {
  // performance.now() is coarsened in browsers (100 us here), so time `samples`
  // calls together, five rounds, and keep the median per call.
  const props = {plan: "pro", path: "/pricing", n: 1, flag: true, text: "x".repeat(80)};
  const blob = JSON.stringify({v: 1, seq: 1, env: {event_id: crypto.randomUUID(), event: "bench", properties: props, created_at: Date.now()}});
  const perCall = (fn) => {
    const rounds = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < samples; i++) fn(i);
      rounds.push((performance.now() - t) * 1000 / samples);
    }
    return rounds.sort((a, b) => a - b)[2];
  };
  const out = {};
  for (const depth of depths) {
    for (let guard = 0; revu.status().queued < depth && guard < 2 * depth; guard++) revu.record("fill", props);
    const readyBefore = revu.status().ready;
    // revu's rounds add 5 x samples events on top of depth (within maxQueue).
    const revuUs = perCall(() => revu.record("bench", props));
    localStorage.setItem("bench:array", JSON.stringify(Array.from({length: depth}, () => JSON.parse(blob))));
    const arrayUs = perCall(() => {
      const q = JSON.parse(localStorage.getItem("bench:array") || "[]");
      q.push(JSON.parse(blob));
      localStorage.setItem("bench:array", JSON.stringify(q));
    });
    const floorUs = perCall((i) => localStorage.setItem("bench:floor:" + i, blob));
    for (let i = 0; i < samples; i++) localStorage.removeItem("bench:floor:" + i);
    localStorage.removeItem("bench:array");
    out[depth] = {revu_us: revuUs, setitem_floor_us: floorUs, whole_array_rewrite_us: arrayUs, core_ready: readyBefore};
  }
  return out;
}
"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    ingest = IngestServer().start()
    ingest.set_faults({"offline": True})
    site = StaticServer({"/": ROOT / "tests" / "e2e" / "pages", "/revu/": ROOT / "dist"}).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            results = {}
            for phase in ("before_ready", "after_ready"):
                page = browser.new_page()
                params = f"ingest={ingest.url}&flushAt=1000&maxQueue=1000&maxBatch=50&flushIntervalMs=3600000"
                page.goto(f"{site.url}/index.html?{params}", wait_until="commit" if phase == "before_ready" else "load")
                page.wait_for_function("window.revu && revu.status")
                if phase == "after_ready":
                    page.wait_for_function("window.__readyState === 'ready'", timeout=60_000)
                results[phase] = page.evaluate(MEASURE, [DEPTHS, SAMPLES])
                page.evaluate("localStorage.clear()")
                page.close()
            browser.close()
    finally:
        site.stop()
        ingest.stop()
    print(f"record() cost in Chromium, microseconds per call (median of 5 rounds of {SAMPLES} calls)")
    print(f"{'page':<14}{'depth':>7}{'core live':>10}{'revu.record':>13}{'setItem floor':>15}{'whole-array rewrite':>21}")
    for phase, by_depth in results.items():
        for depth in DEPTHS:
            row = by_depth[str(depth)]
            print(f"{phase:<14}{depth:>7}{str(row['core_ready']):>10}{row['revu_us']:>13.1f}"
                  f"{row['setitem_floor_us']:>15.1f}{row['whole_array_rewrite_us']:>21.1f}")
    print(json.dumps({phase: {"revu_us_at_depth_0": by[str(DEPTHS[0])]["revu_us"],
                              f"revu_us_at_depth_{DEPTHS[-1]}": by[str(DEPTHS[-1])]["revu_us"]}
                      for phase, by in results.items()}))


if __name__ == "__main__":
    main()
