"""Start-up cost in headless Chromium: script tag to ``revu.ready``, and bytes transferred.

For each dist/ folder given (default: dist/), served by demo/static_server.py the way
docs/serving.md asks (precompressed brotli, immutable hashed assets, revalidated
revu.js) on localhost:

  * cold: ``--runs`` loads, each in a fresh browser context (empty HTTP cache);
  * warm: ``--runs`` more loads of the same page in one context, after two earlier
    visits of a few seconds each filled its HTTP cache and let Chromium store its code
    caches (what a returning visitor gets).

Per load it records the time from just before the ``<script src=".../revu.js">`` tag to
``revu.ready`` resolving (``performance.now()`` in the page), the longest main-thread
task (Long Tasks API), and the bytes received for dist/ as Chromium counts them on the
wire (CDP ``encodedDataLength``: compressed bodies plus headers; 0 for what the HTTP
cache serves). It prints medians. Loads of several folders are interleaved, so that the
load of a shared machine weighs on each alike; the load average is printed with them.

    .venv/bin/python bench/startup.py                      # dist/
    .venv/bin/python bench/startup.py --variants           # builds and compares: no snapshot,
                                                           # snapshot (build/bench/...)
    .venv/bin/python bench/startup.py --dist A --dist B --runs 9 --json

Not a test: nothing here passes or fails. Targets (issue "Off the main thread and at the
platform's floor"): cold <= 1.0 s, warm <= 0.6 s, cold transfer <= 4 MB, warm 0 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

WARMUP_DWELL_MS = 4000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>revu start-up bench</title></head><body>
<script>
  window.__longest = 0;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {}
  window.__t0 = performance.now();
</script>
<script src="/revu/revu.js"></script>
<script>
  const ingest = new URLSearchParams(location.search).get("ingest");
  revu.init({ apiKey: "bench", host: ingest, flushIntervalMs: 3600000, storage: "memory" });
  revu.ready.then(
    () => { window.__readyMs = performance.now() - window.__t0; },
    (e) => { window.__failed = String(e); });
</script>
</body></html>
"""


# --worker: the same loader started in a dedicated module Worker (as the core's Worker
# will), unbundled, with the manifest fetched from dist/manifest.json (one extra small
# request). Script tag -> ready becomes `new Worker` -> the Worker's "ready" message.
WORKER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>revu start-up bench (Worker)</title></head><body>
<script>
  window.__longest = 0;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {}
  window.__t0 = performance.now();
  const worker = new Worker("/worker.mjs", { type: "module" });
  worker.onmessage = (e) => {
    if (e.data.error) window.__failed = e.data.error;
    else window.__readyMs = performance.now() - window.__t0;
  };
</script>
</body></html>
"""

WORKER = """import { loadPythonCore } from "/js_shim/core/load_core.js";
try {
  const manifest = await (await fetch("/revu/manifest.json")).json();
  const { bridge } = await loadPythonCore({ assetsUrl: new URL("/revu/", location.href).href, manifest });
  bridge.start(JSON.stringify({ apiKey: "bench" }));
  postMessage({ ok: true });
} catch (e) {
  postMessage({ error: String(e) });
}
"""


def load_once(context, url: str, timeout_ms: int = 60_000, dwell_ms: int = 50) -> dict:
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    received: dict[str, float] = {}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: received.__setitem__(e["requestId"], e["encodedDataLength"]))
    page.goto(url)
    page.wait_for_function("window.__readyMs !== undefined || window.__failed !== undefined", timeout=timeout_ms)
    failed = page.evaluate("window.__failed")
    if failed:
        raise RuntimeError(f"revu.ready rejected: {failed}")
    page.wait_for_timeout(dwell_ms)  # let the last loadingFinished events arrive
    ready_ms = page.evaluate("window.__readyMs")
    marks = page.evaluate("""Object.fromEntries(performance.getEntriesByType("mark")
        .filter((m) => m.name.startsWith("revu:core:"))
        .map((m) => [m.name.slice(10), m.startTime - window.__t0]))""")
    longest = page.evaluate("window.__longest")
    # Worker requests are not in the page's CDP session: the worker mode counts the page's only.
    dist_bytes = sum(n for rid, n in received.items() if "/revu/" in urls.get(rid, ""))
    requests = sorted(urls[rid].rsplit("/", 1)[-1] for rid in received if "/revu/" in urls.get(rid, ""))
    page.close()
    return {"ready_ms": ready_ms, "longest_task_ms": longest, "bytes": int(dist_bytes), "requests": requests,
            "marks": marks}


def summarize(dist: Path, runs: int, cold: list[dict], warm: list[dict]) -> dict:
    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    return {
        "dist": str(dist),
        "runs": runs,
        "cold_ready_ms": round(med(cold, "ready_ms")),
        "cold_ready_ms_all": [round(r["ready_ms"]) for r in cold],
        "warm_ready_ms": round(med(warm, "ready_ms")),
        "warm_ready_ms_all": [round(r["ready_ms"]) for r in warm],
        "cold_bytes": int(med(cold, "bytes")),
        "warm_bytes": int(med(warm, "bytes")),
        "cold_longest_task_ms": round(med(cold, "longest_task_ms")),
        "warm_longest_task_ms": round(med(warm, "longest_task_ms")),
        "cold_requests": cold[0]["requests"],
        # When each step of js_shim/core/load_core.js finished, ms after the script tag (medians).
        "cold_marks": {k: round(statistics.median(r["marks"].get(k, 0) for r in cold)) for k in cold[0]["marks"]},
        "warm_marks": {k: round(statistics.median(r["marks"].get(k, 0) for r in warm)) for k in warm[0]["marks"]},
        "load_average": os.getloadavg()[0],
    }


def measure_all(browser, dists: list[Path], runs: int, worker: bool = False) -> list[dict]:
    """Loads of the folders are interleaved (A B A B ...), so that the load of a shared
    machine weighs on every folder alike."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="revu-bench-")))
        (tmp / "index.html").write_text(WORKER_PAGE if worker else PAGE)
        (tmp / "worker.mjs").write_text(WORKER)
        ingest = stack.enter_context(IngestServer())
        urls = []
        for dist in dists:
            site = stack.enter_context(StaticServer({"/": tmp, "/revu/": dist, "/js_shim/": ROOT / "js_shim"}))
            urls.append(f"{site.url}/index.html?ingest={ingest.url}")
        cold: list[list[dict]] = [[] for _ in dists]
        for _ in range(runs):
            for i, url in enumerate(urls):
                context = browser.new_context()
                try:
                    cold[i].append(load_once(context, url))
                finally:
                    context.close()
        # A returning visitor's earlier visits: they fill the HTTP cache and, as the pages
        # stay open a few seconds, let Chromium store the compiled wasm and the V8 code
        # cache of the JavaScript modules (written after tier-up, and for scripts only once
        # they were seen twice).
        contexts = [stack.enter_context(_closing(browser.new_context())) for _ in dists]
        for context, url in zip(contexts, urls):
            for _ in range(2):
                load_once(context, url, dwell_ms=WARMUP_DWELL_MS)
        warm: list[list[dict]] = [[] for _ in dists]
        for _ in range(runs):
            for i, (context, url) in enumerate(zip(contexts, urls)):
                warm[i].append(load_once(context, url))
    return [summarize(dist, runs, c, w) for dist, c, w in zip(dists, cold, warm)]


@contextlib.contextmanager
def _closing(context):
    try:
        yield context
    finally:
        context.close()


def build_variants() -> list[tuple[str, Path]]:
    out = []
    for label, flag in (("no-snapshot", "--no-snapshot"), ("snapshot", "--snapshot")):
        target = ROOT / "build" / "bench" / label
        print(f"building {label} into {target.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dist.py"), "--no-test-dist", flag,
                        "--dist-dir", str(target)], check=True, stdout=subprocess.DEVNULL)
        out.append((label, target))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dist", action="append", type=Path, help="a built dist/ folder (repeatable; default dist/)")
    ap.add_argument("--variants", action="store_true", help="build and compare with and without the memory snapshot")
    ap.add_argument("--runs", type=int, default=5, help="cold loads and warm loads per folder (default 5)")
    ap.add_argument("--json", action="store_true", help="print one JSON line per folder")
    ap.add_argument("--worker", action="store_true",
                    help="start the core with js_shim/core/load_core.js in a module Worker instead of revu.js "
                         "(bytes are then not counted: the page's CDP session does not see the Worker's requests)")
    args = ap.parse_args()
    if args.variants:
        targets = build_variants()
    else:
        targets = [(d.name, d.resolve()) for d in (args.dist or [ROOT / "dist"])]
    for label, dist in targets:
        if not (dist / "revu.js").is_file():
            sys.exit(f"{dist}/revu.js is missing: run ./dev build first")

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            results = measure_all(browser, [dist for _label, dist in targets], args.runs, worker=args.worker)
        finally:
            browser.close()
    for result, (label, dist) in zip(results, targets):
        manifest_path = dist / "manifest.json"  # absent in builds before content hashing
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"assets": {}}
        result["label"] = label + (" (worker)" if args.worker else "")
        result["snapshot"] = "snapshot" in manifest["assets"]

    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    print(f"revu start-up in headless Chromium, localhost, medians of {args.runs} loads "
          "(script tag -> revu.ready; bytes on the wire for dist/, brotli); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with it)")
    print(f"{'variant':<14}{'snapshot':>9}{'cold ms':>9}{'warm ms':>9}{'cold bytes':>12}{'warm bytes':>11}"
          f"{'longest task cold/warm ms':>27}")
    for r in results:
        print(f"{r['label']:<14}{str(r['snapshot']):>9}{r['cold_ready_ms']:>9}{r['warm_ready_ms']:>9}"
              f"{r['cold_bytes']:>12,}{r['warm_bytes']:>11,}"
              f"{r['cold_longest_task_ms']:>16}/{r['warm_longest_task_ms']}")
    for r in results:
        print(f"  {r['label']}: cold {r['cold_ready_ms_all']} ms, warm {r['warm_ready_ms_all']} ms; "
              f"cold requests: {', '.join(r['cold_requests'])}")
        print(f"    steps done at (ms after the script tag), cold: {r['cold_marks']}")
        print(f"    warm: {r['warm_marks']}")


if __name__ == "__main__":
    main()
