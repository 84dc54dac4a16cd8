"""Start-up as served: only the manifest's assets, compressed, cached for good, and
every loading failure reported with the asset and the cause. (Timings are in
bench/startup.py, not here.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from demo import static_server
from demo.static_server import StaticServer

from conftest import ROOT, page_url

DIST = ROOT / "dist"
PAGES = ROOT / "tests" / "e2e" / "pages"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DIST / "manifest.json").read_text())


def _ready_state(page, timeout_ms=60_000) -> str:
    # Polled with evaluate (CDP, outside the page's CSP): wait_for_function evaluates its
    # predicate with eval(), which the strict-CSP pages refuse.
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        state = page.evaluate("window.__readyState")
        if state != "pending" and state is not None:
            return state
        time.sleep(0.05)
    raise AssertionError(f"revu.ready neither resolved nor rejected in {timeout_ms} ms")


def _served(server: StaticServer) -> list[tuple[str, str, int, str | None]]:
    return [r for r in server.requests if r[1].startswith("/revu/")]


def test_cold_load_fetches_only_the_manifest_assets_brotli_compressed(context, ingest, manifest):
    with StaticServer({"/": PAGES, "/revu/": DIST}) as site:
        page = context.new_page()
        responses = []
        # context-wide: the assets are fetched by the core's Worker, not the page
        context.on("response", lambda r: responses.append(r) if "/revu/" in r.url else None)
        page.goto(page_url(site, ingest))
        assert _ready_state(page) == "ready"
        served = _served(site)
    wanted = ({"/revu/revu.js", f"/revu/{manifest['worker']['path']}"}
              | {f"/revu/{a['path']}" for a in manifest["assets"].values()})
    assert {path for _m, path, _s, _c in served} == wanted
    assert len(served) == len(wanted)  # each once: no lock file, no wheel, no retries
    assert all(status == 200 and coding == "br" for _m, _p, status, coding in served), served
    by_path = {r.url.split(site.url, 1)[1]: r for r in responses}
    for key, asset in manifest["assets"].items():
        headers = by_path[f"/revu/{asset['path']}"].headers
        assert headers["cache-control"] == "public, max-age=31536000, immutable", key
        assert headers["content-encoding"] == "br", key
        assert headers["vary"] == "Accept-Encoding", key
    assert by_path[f"/revu/{manifest['assets']['wasm']['path']}"].headers["content-type"] == "application/wasm"
    assert by_path["/revu/revu.js"].headers["cache-control"] == "no-cache"


def test_warm_load_takes_every_hashed_asset_from_the_http_cache(context, ingest):
    with StaticServer({"/": PAGES, "/revu/": DIST}) as site:
        page = context.new_page()
        page.goto(page_url(site, ingest))
        assert _ready_state(page) == "ready"
        site.requests.clear()
        page.goto(page_url(site, ingest, again=1))
        assert _ready_state(page) == "ready"
        served = _served(site)
    # revu.js is revalidated (304, no body); nothing under assets/ reaches the server.
    assert served == [("GET", "/revu/revu.js", 304, "br")]


def _dist_copy(tmp_path: Path, drop: str | None = None) -> Path:
    """dist/ as symlinks (cheap), without `drop` and its compressed copies."""
    out = tmp_path / "dist"
    for src in DIST.rglob("*"):
        if src.is_dir():
            continue
        rel = src.relative_to(DIST).as_posix()
        if drop and rel in (drop, f"{drop}.br", f"{drop}.gz"):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, target)
    return out


def _failure(context, ingest, dist: Path) -> tuple[str, list[dict]]:
    with StaticServer({"/": PAGES, "/revu/": dist}) as site:
        page = context.new_page()
        page.goto(page_url(site, ingest))
        state = _ready_state(page, timeout_ms=90_000)
        errors = page.evaluate("window.__errors")
        # Capture still works without the core.
        assert page.evaluate("typeof revu.record('after_failure', {})") == "string"
        return state, errors


def test_missing_asset_rejects_ready_naming_it(context, ingest, manifest, tmp_path):
    stdlib = manifest["assets"]["stdlib"]["path"]
    state, errors = _failure(context, ingest, _dist_copy(tmp_path, drop=stdlib))
    assert state.startswith("failed: CoreLoadError: revu: ")
    assert f"{stdlib} (stdlib) answered HTTP 404" in state
    assert any(e["code"] == "core_unavailable" and stdlib in e["message"] for e in errors), errors


def test_wasm_served_with_the_wrong_type_is_reported(context, ingest, monkeypatch):
    monkeypatch.setitem(static_server.MIME_TYPES, ".wasm", "application/octet-stream")
    state, errors = _failure(context, ingest, DIST)
    assert "(wasm) is served as \"application/octet-stream\"; WebAssembly needs Content-Type: application/wasm" in state
    assert any(e["code"] == "core_unavailable" for e in errors)


def test_module_served_as_html_is_reported(context, ingest, monkeypatch, manifest):
    monkeypatch.setitem(static_server.MIME_TYPES, ".mjs", "text/html; charset=utf-8")
    state, _errors = _failure(context, ingest, DIST)
    assert "module scripts need text/javascript" in state
    assert ("(loader)" in state) or ("(asm)" in state)


def test_runs_under_the_documented_strict_csp(context, ingest):
    # docs/serving.md "Content Security Policy", same-origin dist/: nothing more is needed.
    csp = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; "
           f"connect-src 'self' {ingest.url}; worker-src 'self' blob:")
    with StaticServer({"/": PAGES, "/revu/": DIST}, headers={"Content-Security-Policy": csp}) as site:
        page = context.new_page()
        page.goto(f"{site.url}/csp.html?ingest={ingest.url}")
        assert _ready_state(page) == "ready", page.evaluate("window.__errors")
        event_id = page.evaluate("window.__id")
        state = ingest.wait_until(lambda s: s["unique"] >= 1, timeout_s=30)
        assert [e["event_id"] for e in state["events"]] == [event_id]
        assert page.evaluate("window.__violations") == []
        assert page.evaluate("window.__errors") == []


def test_strict_csp_without_wasm_unsafe_eval_is_reported(context, ingest):
    csp = f"default-src 'none'; script-src 'self'; connect-src 'self' {ingest.url}"
    with StaticServer({"/": PAGES, "/revu/": DIST}, headers={"Content-Security-Policy": csp}) as site:
        page = context.new_page()
        page.goto(f"{site.url}/csp.html?ingest={ingest.url}")
        state = _ready_state(page)
        assert state.startswith("failed: CoreLoadError: revu: ") and "(wasm) failed to compile" in state, state
        # The violation is the Worker's (its script is served with the same policy), not the page's.
        assert any(e["code"] == "core_unavailable" and "wasm" in e["message"] for e in page.evaluate("window.__errors"))


def test_dist_on_another_origin_with_cors_and_the_documented_csp(context, ingest, tmp_path):
    with StaticServer({"/revu/": DIST}, host="localhost") as cdn:  # localhost vs 127.0.0.1: another origin
        html = (PAGES / "csp.html").read_text().replace('src="/revu/revu.js"', f'src="{cdn.url}/revu/revu.js"')
        (tmp_path / "csp.html").write_text(html)
        for name in ("csp_watch.js", "csp.js"):
            (tmp_path / name).write_text((PAGES / name).read_text())
        csp = (f"default-src 'none'; script-src 'self' {cdn.url} 'wasm-unsafe-eval'; "
               f"connect-src {cdn.url} {ingest.url}; worker-src 'self' {cdn.url} blob:")
        with StaticServer({"/": tmp_path}, headers={"Content-Security-Policy": csp}) as site:
            page = context.new_page()
            page.goto(f"{site.url}/csp.html?ingest={ingest.url}")
            assert _ready_state(page) == "ready", page.evaluate("window.__errors")
            assert page.evaluate("window.__violations") == []
        assert {p for _m, p, _s, _c in cdn.requests if "/assets/" in p}, "assets came from the dist origin"


STALL_MONITOR = """
  // Main-thread stalls, measured in both engines: Firefox has no "longtask"
  // PerformanceObserver entry type (docs/browsers.md), so a 10 ms interval
  // records the longest gap between its ticks; a stalled main thread (Pyodide
  // starting on it blocks it for seconds) shows as one long gap.
  window.__maxGap = 0;
  { let last = performance.now();
    setInterval(() => { const now = performance.now(); window.__maxGap = Math.max(window.__maxGap, now - last); last = now; }, 10); }
  window.__longtaskSupported = (PerformanceObserver.supportedEntryTypes || []).includes("longtask");
"""
# The gap monitor's bound: far below a main-thread Pyodide start (2.3 s here, more on a
# loaded CI machine), far above what timer scheduling on a shared 2-core machine costs.
MAX_GAP_MS = 1000


WORKER_PAGE = """<!doctype html><meta charset="utf-8"><title>load_core in a Worker</title>
<script>""" + STALL_MONITOR + """
  window.__longest = 0;
  if (window.__longtaskSupported) new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
  }).observe({ type: "longtask", buffered: true });
  const worker = new Worker("/worker.mjs", { type: "module" });
  worker.onmessage = (e) => { window.__result = e.data; };
  worker.onerror = (e) => { window.__result = { error: "worker error: " + e.message }; };
</script>
"""

WORKER = """import { loadPythonCore } from "/js_shim/core/load_core.js";
try {
  const manifest = await (await fetch("/revu/manifest.json")).json();
  const { bridge } = await loadPythonCore({ assetsUrl: new URL("/revu/", location.href).href, manifest });
  const started = JSON.parse(bridge.start(JSON.stringify({ apiKey: "k" })));
  const commands = JSON.parse(bridge.handle(JSON.stringify([{ type: "restored", now_ms: 1 }])));
  postMessage({ ok: started.ok, commands: commands.map((c) => c.type) });
} catch (e) {
  postMessage({ error: String(e) });
}
"""


def test_load_core_runs_in_a_module_worker_without_blocking_the_page(context, tmp_path):
    # The loader as the core's Worker will use it (no DOM in load_core.js): unbundled,
    # the manifest fetched from dist/manifest.json.
    (tmp_path / "worker.html").write_text(WORKER_PAGE)
    (tmp_path / "worker.mjs").write_text(WORKER)
    with StaticServer({"/": tmp_path, "/js_shim/": ROOT / "js_shim", "/revu/": DIST}) as site:
        page = context.new_page()
        page.goto(f"{site.url}/worker.html")
        page.wait_for_function("window.__result !== undefined", timeout=90_000)
        result = page.evaluate("window.__result")
        assert result.get("ok") is True, result
        assert "publish_rules" in result["commands"] and "report_status" in result["commands"], result
        # Pyodide started in the Worker: the page's main thread had no long task from it
        # (Chromium's longtask entries) and never stalled (gap monitor, both engines).
        assert page.evaluate("window.__longest") < 250
        assert page.evaluate("window.__maxGap") < MAX_GAP_MS, page.evaluate("window.__maxGap")


def test_missing_wasm_rejects_ready_and_events_still_leave_by_beacon(context, ingest, manifest, tmp_path):
    wasm = manifest["assets"]["wasm"]["path"]
    with StaticServer({"/": PAGES, "/revu/": _dist_copy(tmp_path, drop=wasm)}) as site:
        page = context.new_page()
        page.goto(page_url(site, ingest, flushAt=100))
        state = _ready_state(page, timeout_ms=90_000)
        assert f"{wasm} (wasm) answered HTTP 404" in state, state
        assert page.evaluate("revu.flush()") is False, "flush() settles false without a core"
        ids = page.evaluate("Array.from({length: 5}, (_, i) => revu.record('no_core', {i}))")
        page.close(run_before_unload=True)
    state = ingest.wait_until(lambda s: set(ids) <= {e["event_id"] for e in s["events"]}, timeout_s=15)
    assert set(ids) <= {e["event_id"] for e in state["events"]}


@pytest.mark.parametrize("case", ["worker refused", "connect-src blocked"])
def test_a_refused_worker_or_blocked_fetches_reject_ready_and_the_beacon_still_works(context, ingest, case):
    base = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; "
    csp = {"worker refused": base + f"connect-src 'self' {ingest.url}; worker-src 'none'",
           "connect-src blocked": base + f"connect-src {ingest.url}; worker-src 'self' blob:"}[case]
    with StaticServer({"/": PAGES, "/revu/": DIST}, headers={"Content-Security-Policy": csp}) as site:
        page = context.new_page()
        page.goto(f"{site.url}/csp.html?ingest={ingest.url}")
        t0 = time.monotonic()
        state = _ready_state(page, timeout_ms=90_000)
        assert state.startswith("failed:"), state
        assert time.monotonic() - t0 < 65, "within the stated start-up limit (60 s)"
        assert any(e["code"] == "core_unavailable" for e in page.evaluate("window.__errors"))
        event_id = page.evaluate("window.__id")
        page.close(run_before_unload=True)
    state = ingest.wait_until(lambda s: event_id in {e["event_id"] for e in s["events"]}, timeout_s=15)
    assert event_id in {e["event_id"] for e in state["events"]}, "delivered by the unload beacon"


def test_network_lost_while_loading_recovers_when_it_returns(context, ingest, manifest):
    stdlib = manifest["assets"]["stdlib"]["path"]
    blocked = {"on": True}

    def maybe_abort(route):
        if blocked["on"]:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    context.route(f"**/{stdlib}", maybe_abort)
    with StaticServer({"/": PAGES, "/revu/": DIST}) as site:
        page = context.new_page()
        page.goto(page_url(site, ingest))
        state = _ready_state(page, timeout_ms=90_000)
        assert state.startswith("failed:") and "stdlib" in state, state
        ids = page.evaluate("Array.from({length: 5}, (_, i) => revu.record('while_loading_failed', {i}))")
        assert page.evaluate("revu.flush()") is False
        blocked["on"] = False
        context.set_offline(True)
        context.set_offline(False)  # the page hears "online": revu starts its core again
        page.wait_for_function("revu.status().ready === true", timeout=60_000)
        assert page.evaluate("revu.flush()") is True
        state = ingest.wait_until(lambda s: set(ids) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
    context.unroute(f"**/{stdlib}")
    assert set(ids) <= {e["event_id"] for e in state["events"]}


LONGTASK_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>long tasks</title>
<script>""" + STALL_MONITOR + """
  window.__tasks = [];
  if (window.__longtaskSupported) new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__tasks.push(e.duration); })
    .observe({ type: "longtask", buffered: true });
</script>
<script src="/revu/revu.js"></script>
<script>
  revu.init({ apiKey: "k", host: new URLSearchParams(location.search).get("ingest") });
  window.__readyState = "pending";
  revu.ready.then(() => (window.__readyState = "ready"), (e) => (window.__readyState = "failed: " + e));
  for (let i = 0; i < 50; i++) revu.record("boot", { i });
</script></head><body></body></html>"""


def test_pyodide_never_runs_on_the_main_thread(context, ingest, gen_dir):
    (gen_dir / "longtask.html").write_text(LONGTASK_PAGE)
    with StaticServer({"/": PAGES, "/revu/": DIST, "/gen/": gen_dir}) as site:
        page = context.new_page()
        page.goto(f"{site.url}/gen/longtask.html?ingest={ingest.url}")
        assert _ready_state(page) == "ready"
        page.wait_for_timeout(200)  # let the observer deliver the last entries
        tasks = page.evaluate("window.__tasks")
        max_gap = page.evaluate("window.__maxGap")
        longtask_supported = page.evaluate("window.__longtaskSupported")
        realm = page.evaluate("""() => ({
          loadPyodide: typeof globalThis.loadPyodide,
          pyodide: typeof globalThis.pyodide,
          wasmFetchedByPage: performance.getEntriesByType("resource").some((e) => e.name.endsWith(".wasm")),
          workers: 0,
        })""")
        assert len(page.workers) == 1, "the core runs in one Worker"
    assert realm["loadPyodide"] == "undefined" and realm["pyodide"] == "undefined"
    assert realm["wasmFetchedByPage"] is False, "the page's realm never fetched the wasm"
    # The bound only a main-thread start can exceed on a loaded CI machine (the
    # 50 ms target is the benchmark's).
    assert max(tasks, default=0) < 250, tasks
    # Firefox has no longtask entries: there the gap monitor alone proves the main
    # thread never stalled while the core started; Chromium checks both.
    assert longtask_supported == (context.browser.name == "chromium"), longtask_supported
    assert max_gap < MAX_GAP_MS, f"main thread stalled {max_gap:.0f} ms"
