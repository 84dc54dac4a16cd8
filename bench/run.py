"""revu against the SDKs users would pick instead: every workload, one run.

    ./dev bench                      # full run (see bench/README.md for what and how long)
    ./dev bench --trials 5           # more trials
    ./dev bench --quick              # the smallest form: 1 trial, tiny N (what the smoke test runs)
    ./dev bench --sdks revu,segment --workloads startup,survival

Writes bench/results/<UTC timestamp>.json and .md; a full run (all SDKs, all
workloads, not --quick) also rewrites the "## SDK comparison" section of
bench/RESULTS.md and the headline table in bench/README.md (--no-update-docs
to keep them). Not a test: nothing here passes or fails on a figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report, workloads as w  # noqa: E402
from bench.harness import VARIANTS, Bench, PageCrashed, run_build  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
README_MD = ROOT / "bench" / "README.md"
ALL_WORKLOADS = ("startup", "enqueue", "queued", "survival", "survival_reference", "unload", "depth", "ua_check")
ALL_VARIANTS = tuple(VARIANTS)
# posthog-default loads and behaves like posthog except for its rate limit and
# bot filter, so it runs only where those can change a figure.
# posthog-default also keeps its queue in memory as posthog does (both lose it
# on a reload), so survival does not tell them apart either.
SKIP = {("startup", "posthog-default"), ("unload", "posthog-default"), ("survival", "posthog-default")}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- machine facts


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    cpu = re.search(r"model name\s*:\s*(.+)", _read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+)", _read("/proc/meminfo"))
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "os": (re.search(r'PRETTY_NAME="(.+)"', _read("/etc/os-release")) or [None, platform.system()])[1],
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def revu_version() -> dict[str, Any]:
    pkg = json.loads((ROOT / "package.json").read_text())
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "js_shim", "py_src", "scripts"],
                           capture_output=True, text=True)
    revu_js = ROOT / "dist" / "revu.js"
    return {
        "version": pkg.get("version"),
        "commit": git.stdout.strip() or None,
        "sources_modified": bool(dirty.stdout.strip()),
        "dist_revu_js_sha256": hashlib.sha256(revu_js.read_bytes()).hexdigest()[:16] if revu_js.exists() else None,
    }


def playwright_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("playwright")
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Job:
    workload: str
    variant: str
    tag: str
    fn: Callable[[], dict[str, Any]]


def jobs_for_trial(bench: Bench, p: w.Params, variants: list[str], workloads: list[str], trial: int) -> list[Job]:
    # Rotate the SDK order each trial, so drift over the run hits every SDK alike.
    k = trial % len(variants)
    order = variants[k:] + variants[:k]
    small = [n for n in p.enqueue_ns if n != max(p.enqueue_ns)]
    big = max(p.enqueue_ns)
    jobs: list[Job] = []

    def add(workload: str, tag: str, fn_for: Callable[[str], Callable[[], dict[str, Any]]],
            only: tuple[str, ...] | None = None) -> None:
        if workload not in workloads:
            return
        for v in order:
            if (workload, v) in SKIP or (only and v not in only):
                continue
            jobs.append(Job(workload, v, tag, fn_for(v)))

    light = trial < p.trials
    if light:
        add("startup", "", lambda v: lambda: w.startup(bench, v, p))
        for n in small:
            add("enqueue", str(n), lambda v, n=n: lambda: w.enqueue(bench, v, n, p, drain=False))
    if trial < p.heavy_trials:
        add("queued", str(big), lambda v: lambda: w.enqueue(bench, v, big, p, drain=True))
    if not light:
        return jobs
    for mode in ("ingest", "device"):
        add("survival", mode, lambda v, mode=mode: lambda: w.survival(bench, v, mode, p))
    add("survival_reference", "ingest", lambda v: lambda: w.survival_reference(bench, p), only=("revu",))
    for mode in ("close", "navigate"):
        add("unload", mode, lambda v, mode=mode: lambda: w.unload(bench, v, mode, p))
    add("depth", "", lambda v: lambda: w.depth(bench, p), only=("revu",))
    if trial == 0:
        add("ua_check", "", lambda v: lambda: w.ua_check(bench, v, p), only=("posthog-default",))
    return jobs


def run_job(job: Job, trial: int) -> dict[str, Any]:
    t0 = time.monotonic()
    result: dict[str, Any] = {"workload": job.workload, "variant": job.variant, "tag": job.tag, "trial": trial}
    try:
        result["figures"] = job.fn()
    except PageCrashed as exc:
        result["crashed"] = True
        result["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - one failing job must not end the run
        crashed = "crash" in str(exc).lower()
        result["crashed"] = crashed
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        if not crashed:
            log(traceback.format_exc(limit=3))
    result["wall_s"] = round(time.monotonic() - t0, 1)
    status = "CRASHED" if result.get("crashed") else ("ERROR " + result["error"] if result.get("error") else "ok")
    log(f"trial {trial + 1} {job.workload:<18} {job.variant:<16} {job.tag:<8} {result['wall_s']:>6} s  {status}")
    return result


# ----------------------------------------------------------------------------- documents


def markdown(meta: dict[str, Any], summary: dict[str, Any]) -> str:
    m = meta["machine"]
    peers = ", ".join(f"`{v['package']}` {v['version']}" for k, v in meta["versions"].items() if k != "esbuild")
    revu = meta["revu"]
    lines = [
        "## SDK comparison",
        "",
        f"Run of {meta['started_utc']} UTC (`./dev bench{meta['argv']}`, {meta['wall_s'] / 60:.1f} min; "
        f"{meta['params']['trials']} trial(s) of each workload, {meta['params']['heavy_trials']} of the "
        f"{max(meta['params']['enqueue_ns']):,}-event one (enqueue, memory, drain); medians, with min–max over "
        "the trials in brackets).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, kernel {m['kernel']}; "
        f"load average {meta['load_start']} at the start and {meta['load_end']} at the end "
        "(the machine is shared: timings are noisy, compare within one run).",
        f"- Browser: Chromium {meta['chromium']} (headless, Playwright {meta['playwright']}).",
        f"- revu {revu['version']} at commit {revu['commit']}"
        f"{' (sources modified)' if revu['sources_modified'] else ''}, dist/revu.js sha256 "
        f"{revu['dist_revu_js_sha256']}.",
        f"- Peers (npm, exact pins in package.json, bundled with esbuild {meta['versions']['esbuild']['version']}): "
        f"{peers}.",
        f"- Requests from the bench pages (SDKs, their Workers, beacons) to anything but the local servers, from "
        f"Chromium's net log: {len(meta['non_local_requests'])}"
        + (f" ({', '.join(sorted({r['url'] for r in meta['non_local_requests']})[:5])})"
           if meta['non_local_requests'] else "")
        + (f". Chromium itself (no page) tried {', '.join(meta.get('browser_own_requests', []))}; there is no "
           "internet here, so they failed" if meta.get("browser_own_requests") else "") + ".",
        "- Servers: every SDK, revu included, posts to the bench sink (`bench/sink.py`) on another site; the row "
        "\"revu via the reference server\" is revu against `demo.ingest_server.IngestServer`. Pages and SDK files come "
        "from `bench/assets.py` (brotli, HTTP cache). How each figure is measured: bench/README.md.",
        "",
        "### Headline: revu against each peer",
        "",
        report.headline(summary, meta["params"]),
        "",
        report.tables(summary),
        "",
    ]
    return "\n".join(lines)


def replace_section(text: str, heading: str, body: str) -> str:
    """Replace the section that starts with ``heading`` (up to the next "## ")."""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _m: body.rstrip() + "\n\n", text, count=1)
    return text.rstrip() + "\n\n" + body.rstrip() + "\n"


def update_docs(md: str, headline: str, meta: dict[str, Any]) -> None:
    current = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    RESULTS_MD.write_text(replace_section(current, "## SDK comparison", md))
    if README_MD.exists():
        text = README_MD.read_text()
        block = (f"<!-- headline:start -->\n{headline}\n\nFrom the run of {meta['started_utc']} UTC "
                 f"(bench/RESULTS.md).\n<!-- headline:end -->")
        text = re.sub(r"<!-- headline:start -->.*?<!-- headline:end -->", lambda _m: block, text, flags=re.S)
        README_MD.write_text(text)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smallest form: 1 trial, tiny N")
    parser.add_argument("--trials", type=int, help="trials of every workload but the largest enqueue "
                        "(default 3, 1 with --quick)")
    parser.add_argument("--heavy-trials", type=int, help="trials of the largest enqueue with its memory and "
                        "drain figures (default 1)")
    parser.add_argument("--sdks", help=f"comma list of {','.join(ALL_VARIANTS)}")
    parser.add_argument("--workloads", help=f"comma list of {','.join(ALL_WORKLOADS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON and Markdown go")
    parser.add_argument("--no-update-docs", action="store_true",
                        help="do not rewrite bench/RESULTS.md and bench/README.md")
    parser.add_argument("--report", type=Path, metavar="RESULTS_JSON",
                        help="run nothing: rebuild the tables of a results JSON and print them (with "
                             "--update-docs, also rewrite bench/RESULTS.md and the headline in bench/README.md)")
    parser.add_argument("--update-docs", action="store_true", help="with --report: rewrite the documents")
    args = parser.parse_args(argv)

    if args.report:
        data = json.loads(args.report.read_text())
        summary = report.aggregate(data["results"])
        headline = report.headline(summary, data["meta"]["params"])
        md = markdown(data["meta"], summary)
        print(md)
        if args.update_docs:
            update_docs(md, headline, data["meta"])
            log("updated bench/RESULTS.md (## SDK comparison) and the headline in bench/README.md")
        return 0

    params = w.QUICK if args.quick else w.FULL
    if args.trials:
        if args.trials < 1:
            parser.error("--trials must be at least 1")
        params = dataclasses.replace(params, trials=args.trials)
    if args.heavy_trials:
        if args.heavy_trials < 1:
            parser.error("--heavy-trials must be at least 1")
        params = dataclasses.replace(params, heavy_trials=args.heavy_trials)
    variants = args.sdks.split(",") if args.sdks else list(ALL_VARIANTS)
    workloads = args.workloads.split(",") if args.workloads else list(ALL_WORKLOADS)
    for v in variants:
        if v not in ALL_VARIANTS:
            parser.error(f"unknown SDK {v!r}; choose from {', '.join(ALL_VARIANTS)}")
    for wl in workloads:
        if wl not in ALL_WORKLOADS:
            parser.error(f"unknown workload {wl!r}; choose from {', '.join(ALL_WORKLOADS)}")
    if not (ROOT / "dist" / "revu.js").is_file():
        parser.error("dist/revu.js is missing: run ./dev build (./dev bench does)")
    full = not args.quick and set(variants) == set(ALL_VARIANTS) and set(workloads) == set(ALL_WORKLOADS)

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    built = run_build(log)
    meta: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M"),
        "argv": (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "machine": machine(),
        "load_start": " ".join(_read("/proc/loadavg").split()[:3]),
        "revu": revu_version(),
        "versions": built["versions"],
        "bundles": built["bundles"],
        "playwright": playwright_version(),
        "params": dataclasses.asdict(params),
        "variants": variants,
        "workloads": workloads,
    }
    log(f"{'quick' if args.quick else 'full'} run: {params.trials} trial(s), SDKs {','.join(variants)}")
    results: list[dict[str, Any]] = []
    bench = Bench(log=log).start()
    try:
        meta["chromium"] = bench.browser.version
        meta["user_agent"] = bench.user_agent
        big = max(params.enqueue_ns)
        for trial in range(max(params.trials, params.heavy_trials)):
            fallback_done = False
            for job in jobs_for_trial(bench, params, variants, workloads, trial):
                result = run_job(job, trial)
                results.append(result)
                if job.workload == "queued" and result.get("crashed") and params.crash_fallback_n < big:
                    n = params.crash_fallback_n
                    log(f"{job.variant} crashed with {big:,} queued: measuring again at {n:,}")
                    again = [job.variant] + ([] if fallback_done or job.variant == "revu" or "revu" not in variants
                                             else ["revu"])
                    for v in again:
                        results.append(run_job(Job("queued", v, str(n),
                                                   lambda v=v: w.enqueue(bench, v, n, params, drain=True)), trial))
                    fallback_done = True
    finally:
        meta["sink_problems"] = bench.sink.problems() if bench.sink else {}
        bench.stop()
        meta["non_local_requests"] = bench.non_local
        meta["browser_own_requests"] = bench.browser_requests
        meta["console_errors"] = bench.console_errors
    meta["wall_s"] = round(time.monotonic() - t0, 1)
    meta["load_end"] = " ".join(_read("/proc/loadavg").split()[:3])

    summary = report.aggregate(results)
    headline = report.headline(summary, meta["params"])
    md = markdown(meta, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    json_path = args.out / f"{stamp}.json"
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "results": results, "headline": headline},
                                    indent=1, default=str))
    md_path = args.out / f"{stamp}.md"
    md_path.write_text(md)
    print(md)
    log(f"wrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path} and .md "
        f"in {meta['wall_s'] / 60:.1f} min")
    if full and not args.no_update_docs:
        update_docs(md, headline, meta)
        log("updated bench/RESULTS.md (## SDK comparison) and the headline in bench/README.md")
    failed = [r for r in results if r.get("error") and not r.get("crashed")]
    if failed:
        log(f"{len(failed)} job(s) failed: " + "; ".join(f"{r['workload']}/{r['variant']}: {r['error']}"
                                                          for r in failed[:5]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
