"""Browser plumbing for the SDK comparison: servers, contexts, CDP metrics,
renderer memory, waiting for a quiet main thread.

Everything here is measurement machinery; the workloads are in
``bench/workloads.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.assets import AssetServer  # noqa: E402
from bench.sink import Sink  # noqa: E402

CHROMIUM = os.environ.get("REVU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # navigator.webdriver false, as in a visitor's browser (PostHog counts
    # webdriver as a bot and drops every event).
    "--disable-blink-features=AutomationControlled",
]
BUILD = ROOT / "build" / "bench"
SITE = BUILD / "site"

# Which page (bundle) each measured variant loads.
VARIANTS: dict[str, dict[str, str]] = {
    "revu": {"page": "revu", "sink_sdk": "revu"},
    "posthog": {"page": "posthog", "sink_sdk": "posthog"},
    "posthog-default": {"page": "posthog", "sink_sdk": "posthog"},
    "segment": {"page": "segment", "sink_sdk": "segment"},
    "amplitude": {"page": "amplitude", "sink_sdk": "amplitude"},
    "mixpanel": {"page": "mixpanel", "sink_sdk": "mixpanel"},
}

FIRST_SCRIPT = """
// Installed before any SDK script: long tasks, errors, the harness's config.
window.__bench = {longtasks: [], errors: [], start: performance.now()};
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__bench.longtasks.push([e.startTime, e.duration]);
  }).observe({type: "longtask", buffered: true});
} catch (e) { window.__bench.errors.push("longtask observer: " + e); }
addEventListener("error", (e) => window.__bench.errors.push(String(e.message)));
addEventListener("unhandledrejection", (e) => window.__bench.errors.push("unhandled rejection: " + String(e.reason && e.reason.message || e.reason)));
window.__benchConfig = JSON.parse(new URLSearchParams(location.search).get("cfg") || "{}");
// record() cost at queue depths (used from the page's last script, "at
// start", and later through evaluate). performance.now() is coarsened (100 us
// without cross-origin isolation), so `calls` calls are timed together,
// `rounds` times, and the median per call is kept; a bare localStorage.setItem
// of a same-sized record is timed the same way as a floor.
window.__benchMeasure = {
  props(i, run) { return {i, run, plan: "pro", path: "/pricing", value: 42.5, flag: true}; },
  record(rounds, calls, run, next) {
    const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const sample = JSON.stringify({v: 1, seq: 1, env: {event_id: crypto.randomUUID(), event: "bench", properties: this.props(0, run), created_at: Date.now()}});
    const rec = [], floor = [];
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      for (let c = 0; c < calls; c++) window.benchSdk.track("bench", this.props(next(), run));
      rec.push((performance.now() - t) * 1000 / calls);
      t = performance.now();
      for (let c = 0; c < calls; c++) localStorage.setItem("bench:floor:" + c, sample);
      floor.push((performance.now() - t) * 1000 / calls);
    }
    for (let c = 0; c < calls; c++) localStorage.removeItem("bench:floor:" + c);
    return {record_us: median(rec), setitem_floor_us: median(floor)};
  },
  depths(depths, rounds, calls, run) {
    // One synchronous run: the SDK's core cannot become ready meanwhile.
    const sdk = window.benchSdk, out = [];
    let i = 0, recorded = 0;
    for (const depth of depths) {
      for (; recorded < depth; recorded++) sdk.track("bench_fill", this.props(i++, run));
      const st = sdk.status();
      out.push({depth, queued: st.queued, ready: st.ready, ...this.record(rounds, calls, run, () => i++)});
      recorded += rounds * calls;
    }
    return out;
  },
};
"""

# After the SDK's scripts: a measurement the harness asked to run while the
# page's scripts run (cfg.atStart = {fn, args}), e.g. record() before ready.
LAST_SCRIPT = """
if (window.__benchConfig.atStart) {
  const {fn, args} = window.__benchConfig.atStart;
  try { window.__benchAtStart = window.__benchMeasure[fn](...args); }
  catch (e) { window.__benchAtStart = {error: String(e && e.stack || e)}; }
}
"""

# Added to every context before any page script. A device that is offline
# shows navigator.onLine === false to every document, including one loaded
# while offline; Chromium's network emulation (context.set_offline) blocks the
# requests of such a document but reports it as online and never fires its
# `online` event. This override makes documents loaded during a "device
# offline" period see what a real offline device shows.
NETWORK_INIT = """
(() => {
  const desc = Object.getOwnPropertyDescriptor(Navigator.prototype, "onLine");
  Object.defineProperty(Navigator.prototype, "onLine", {
    configurable: true, enumerable: desc.enumerable,
    get() { return window.__benchDeviceOffline ? false : desc.get.call(this); },
  });
  addEventListener("online", () => { window.__benchOnlineFired = true; });
})();
"""

PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bench: {name}</title>
<script>{first}</script>
</head>
<body>
{scripts}
</body>
</html>
"""


def write_pages() -> None:
    """Write build/bench/site/<page>.html (one per SDK) and blank.html."""
    SITE.mkdir(parents=True, exist_ok=True)
    for page in sorted({v["page"] for v in VARIANTS.values()}):
        scripts = []
        if page == "revu":
            scripts.append('<script src="/revu/revu.js"></script>')
        scripts.append(f'<script src="/sdk/{page}.js"></script>')
        scripts.append(f"<script>{LAST_SCRIPT}</script>")
        (SITE / f"{page}.html").write_text(PAGE.format(name=page, first=FIRST_SCRIPT, scripts="\n".join(scripts)))
    (SITE / "blank.html").write_text('<!doctype html><html><head><meta charset="utf-8"><link rel="icon" '
                                     'href="data:,"></head><body>a page without an SDK</body></html>\n')


def run_build(log) -> dict[str, Any]:
    """Bundle the adapters, precompress assets, write the pages."""
    proc = subprocess.run(["node", str(ROOT / "bench" / "build.mjs"), str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench/build.mjs failed:\n{proc.stdout}\n{proc.stderr}")
    log(proc.stdout.strip())
    write_pages()
    return json.loads((BUILD / "versions.json").read_text())


# ----------------------------------------------------------------------------- processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def our_renderers() -> list[int]:
    """Chromium renderer processes started by this Python process."""
    children = _children_map()
    out, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"--type=renderer" in cmd:
                out.append(child)
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return -1


def process_memory(pid: int) -> dict[str, float]:
    """Private (USS) and proportional (PSS) memory of a process, in MiB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                values[parts[0][:-1]] = int(parts[1])
    private_kib = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return {"private_mib": private_kib / 1024, "pss_mib": values.get("Pss", 0) / 1024,
            "rss_mib": values.get("Rss", 0) / 1024}


# ----------------------------------------------------------------------------- sessions


class PageCrashed(RuntimeError):
    pass


@dataclass
class Session:
    """One fresh browser context with one page and a CDP session on it."""

    bench: "Bench"
    variant: str
    user_agent: str | None = None
    crashed: bool = False
    context: Any = None
    page: Any = None
    cdp: Any = None
    _renderer: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        kwargs = {"user_agent": self.user_agent} if self.user_agent else {}
        self.context = self.bench.browser.new_context(**kwargs)
        self.context.add_init_script(NETWORK_INIT)
        self.context.on("request", lambda r: self.bench.note_request(self.variant, r.url))
        self.page = self.context.new_page()
        self.page.on("crash", lambda _page: setattr(self, "crashed", True))
        self.page.on("console", lambda msg: self.bench.note_console(self.variant, msg))
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")

    def close(self) -> None:
        try:
            self.context.close()
        except Exception:  # noqa: BLE001 - a crashed context may refuse; nothing to keep
            pass

    def check(self) -> None:
        if self.crashed:
            raise PageCrashed(f"{self.variant}: the renderer crashed")

    # -- navigation ----------------------------------------------------------

    def url(self, options: dict[str, Any] | None = None, sink: str | None = None,
            at_start: dict[str, Any] | None = None) -> str:
        cfg = {"sink": sink or self.bench.sink.url, "variant": self.variant, "options": options or {}}
        if at_start:
            cfg["atStart"] = at_start
        page = VARIANTS[self.variant]["page"]
        return f"{self.bench.assets.url}/page/{page}.html?cfg={quote(json.dumps(cfg, separators=(',', ':')))}"

    def goto(self, url: str, wait_until: str = "load") -> None:
        self.page.goto(url, wait_until=wait_until, timeout=90_000)
        self._renderer = None

    def reload(self, url: str) -> None:
        """Load the page again (a navigation to the same URL: the page and the
        SDK's files come from the HTTP cache, so this works offline too)."""
        self.goto(url)

    # -- the network -----------------------------------------------------------

    def go_offline(self, mode: str, ingest_down) -> None:
        """``mode`` "ingest": only the ingest is unreachable (``ingest_down(True)``),
        navigator.onLine stays true. "device": the browser is offline too
        (every request fails, navigator.onLine is false, `offline` fires)."""
        ingest_down(True)
        if mode == "device":
            self.context.add_init_script("window.__benchDeviceOffline = true;")
            self.page.evaluate("window.__benchDeviceOffline = true")
            self.context.set_offline(True)

    def go_online(self, mode: str, ingest_down) -> float:
        """Undo ``go_offline``; returns the monotonic time the ingest answers
        again. In "device" mode the page gets its `online` event."""
        if mode == "device":
            self.context.add_init_script("window.__benchDeviceOffline = false;")
            self.page.evaluate("window.__benchDeviceOffline = false; window.__benchOnlineFired = false")
        ingest_down(False)
        t_online = time.monotonic()
        if mode == "device":
            self.context.set_offline(False)
            time.sleep(0.1)
            # A document loaded while offline gets no `online` from Chromium (see NETWORK_INIT).
            self.page.evaluate("() => { if (!window.__benchOnlineFired) dispatchEvent(new Event('online')); }")
        return t_online

    def wait_ready(self, timeout_s: float = 90) -> dict[str, Any]:
        """Wait for the SDK's own ready signal; returns the page's timings."""
        self.page.wait_for_function(
            "() => window.__bench && (window.__bench.readyAt !== undefined || window.__bench.failed !== undefined)",
            timeout=timeout_s * 1000, polling=50)
        timings = self.timings()
        if timings.get("failed"):
            raise RuntimeError(f"{self.variant} did not start: {timings['failed']}")
        return timings

    def timings(self) -> dict[str, Any]:
        return self.page.evaluate("""() => ({
            usable: __bench.usableAt, init: __bench.initAt, ready: __bench.readyAt, failed: __bench.failed,
            longtasks: __bench.longtasks, errors: __bench.errors, now: performance.now(),
        })""")

    def status(self) -> dict[str, Any]:
        return self.page.evaluate("() => window.benchSdk ? benchSdk.status() : {}")

    def record(self, n: int, run: str, start: int = 0) -> float:
        """Record n bench events back to back; returns the loop's milliseconds."""
        return self.page.evaluate(
            """([n, run, start]) => {
                const sdk = window.benchSdk;
                const t = performance.now();
                for (let i = start; i < start + n; i++) {
                    sdk.track("bench", {i, run, plan: "pro", path: "/pricing", value: 42.5, flag: true});
                }
                return performance.now() - t;
            }""", [n, run, start])

    # -- metrics -------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        self.check()
        reply = self.cdp.send("Performance.getMetrics")
        return {m["name"]: m["value"] for m in reply["metrics"]}

    @staticmethod
    def busy_s(m: dict[str, float]) -> float:
        """Main-thread task time (s). It includes the work of our own evaluate()
        calls (the measured loops) and of the metric polling (well under 1 ms
        a second)."""
        return m.get("TaskDuration", 0.0)

    def wait_quiet(self, base: dict[str, float], base_t: float, window_s: float = 1.0, busy_frac: float = 0.01,
                   cap_s: float = 45.0, poll_s: float = 0.25) -> dict[str, Any]:
        """Wait until the main thread is idle: busy less than ``busy_frac`` of
        the time over ``window_s``. Returns main-thread task time and renderer
        CPU time from ``base`` to the start of that quiet window."""
        samples = [(base_t, self.busy_s(base), base.get("ProcessTime", 0.0))]
        while True:
            time.sleep(poll_s)
            m = self.metrics()
            now = time.monotonic()
            samples.append((now, self.busy_s(m), m.get("ProcessTime", 0.0)))
            # The latest sample at least window_s old.
            k = None
            for idx in range(len(samples) - 1, -1, -1):
                if now - samples[idx][0] >= window_s:
                    k = idx
                    break
            settled = k is not None and samples[-1][1] - samples[k][1] <= busy_frac * (now - samples[k][0])
            if settled or now - base_t >= cap_s:
                end = samples[k] if settled else samples[-1]
                return {"busy_s": end[1] - samples[0][1], "cpu_s": end[2] - samples[0][2],
                        "elapsed_s": end[0] - base_t, "settled": settled}

    def renderer_pid(self) -> int | None:
        """The renderer process of this page: the one whose CPU time grows
        while the page spins for 300 ms."""
        if self._renderer is not None:
            return self._renderer
        pids = our_renderers()
        if not pids:
            return None
        before = {pid: _cpu_ticks(pid) for pid in pids}
        self.page.evaluate("() => { const t = performance.now(); while (performance.now() - t < 300) {} }")
        deltas = {pid: _cpu_ticks(pid) - before[pid] for pid in pids}
        best = max(deltas, key=deltas.get)
        self._renderer = best if deltas[best] > 0 else None
        return self._renderer

    def memory(self) -> dict[str, Any]:
        """JS heap (main isolate) and the renderer's memory, after a full GC."""
        pid = self.renderer_pid()
        for _ in range(2):
            self.cdp.send("HeapProfiler.collectGarbage")
        m = self.metrics()
        out: dict[str, Any] = {"js_heap_mib": m.get("JSHeapUsedSize", 0) / 2**20}
        if pid is not None:
            try:
                mem = process_memory(pid)
                out.update(renderer_private_mib=mem["private_mib"], renderer_pss_mib=mem["pss_mib"])
            except OSError:
                pass
        return out


# ----------------------------------------------------------------------------- the bench


@dataclass
class Bench:
    """Servers and one browser for a whole run."""

    log: Any
    sink: Sink = None  # type: ignore[assignment]
    assets: AssetServer = None  # type: ignore[assignment]
    ingest: Any = None
    browser: Any = None
    user_agent: str = ""
    non_local: list[dict[str, str]] = field(default_factory=list)
    browser_requests: list[str] = field(default_factory=list)  # hosts Chromium itself tried (not a page)
    console_errors: dict[str, list[str]] = field(default_factory=dict)
    _pw: Any = None
    _netlog: Path = None  # type: ignore[assignment]
    _local_hosts: set[str] = field(default_factory=set)

    def start(self) -> "Bench":
        from playwright.sync_api import sync_playwright

        from demo.ingest_server import IngestServer

        self.sink = Sink().start()
        self.assets = AssetServer(
            {"/page/": SITE, "/sdk/": BUILD / "sdk", "/revu/": ROOT / "dist"},
            compressed_root=BUILD / "compressed", cacheable=("/sdk/", "/revu/", "/page/"), host="localhost",
        ).start()
        self.ingest = IngestServer().start()
        self._local_hosts = {urlsplit(u).netloc for u in (self.sink.url, self.assets.url, self.ingest.url)}
        self._pw = sync_playwright().start()
        # Chromium's net log sees every request, beacons, keepalive fetches and
        # Workers' included (Playwright's request events miss the first two).
        BUILD.mkdir(parents=True, exist_ok=True)
        self._netlog = BUILD / f"netlog-{os.getpid()}.json"
        self.browser = self._pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS + [f"--log-net-log={self._netlog}"])
        # What a real visitor's Chromium sends: the same string without "Headless".
        probe = self.browser.new_page()
        self.headless_user_agent = probe.evaluate("navigator.userAgent")
        probe.close()
        self.user_agent = self.headless_user_agent.replace("HeadlessChrome", "Chrome")
        return self

    def stop(self) -> None:
        for closer in (lambda: self.browser.close(), lambda: self._pw.stop(), self._read_netlog, self.sink.stop,
                       self.assets.stop, self.ingest.stop):
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass

    def _read_netlog(self) -> None:
        """Every request a bench page started (its initiator is the pages'
        origin) to anything but the local servers goes to ``non_local``;
        Chromium's own background requests (no initiator) are listed apart."""
        if not self._netlog.exists():
            return
        text = self._netlog.read_text(errors="replace")
        self._netlog.unlink()
        pages = self.assets.url
        seen = {r["url"] for r in self.non_local}
        for m in re.finditer(r'"initiator":"([^"]*)".{0,600}?"url":"([^"]+)"', text):
            initiator, url = m.group(1), m.group(2)
            host = urlsplit(url).netloc
            if urlsplit(url).scheme not in ("http", "https", "ws", "wss") or host in self._local_hosts:
                continue
            if initiator == pages:
                if url[:300] not in seen:
                    seen.add(url[:300])
                    self.non_local.append({"variant": "(net log)", "url": url[:300]})
            elif host not in self.browser_requests:
                self.browser_requests.append(host)

    def session(self, variant: str, headless_ua: bool = False) -> Session:
        return Session(self, variant, user_agent=None if headless_ua else self.user_agent)

    def note_request(self, variant: str, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
            return
        if parts.netloc not in self._local_hosts:
            self.non_local.append({"variant": variant, "url": url[:300]})

    def note_console(self, variant: str, msg: Any) -> None:
        if msg.type == "error":
            errors = self.console_errors.setdefault(variant, [])
            if len(errors) < 20:
                errors.append(msg.text[:300])
