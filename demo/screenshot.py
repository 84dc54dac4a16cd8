"""Regenerate docs/demo.png: the pipeline page after a scripted scenario, in headless Chromium.

    python demo/screenshot.py [--out docs/demo.png] [--dist dist]

Starts both demo servers on ephemeral ports (ingest database in memory), opens
demo/site/pipeline.html at 1280 x 800 in /usr/bin/chromium (REVU_CHROMIUM
overrides) through Playwright, and plays: 12 events delivered, a poison event
dead-lettered, the ingest taken offline while 6 more are recorded (backing
off), then back online with every answer delayed so that a batch is in flight
when the picture is taken, and 3 more recorded behind it. Needs a built dist/
and Playwright (the .venv of ./dev setup has both). Takes about 20 seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

CHROMIUM = os.environ.get("REVU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


def wait_for(page, expression: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(expression, timeout=timeout_ms)


def play(page, ingest: IngestServer) -> None:
    """The scenario shown in docs/demo.png."""
    wait_for(page, "window.__pipeline && window.__pipeline.ready", 90_000)
    for _ in range(2):
        page.click("#btn-record")
        time.sleep(0.3)
    for _ in range(10):
        page.click("#btn-record")
    ingest.wait_until(lambda s: s["unique"] == 12, timeout_s=30)
    page.click("#btn-poison")
    wait_for(page, "window.__pipeline.chips.dead === 1")
    ingest.wait_until(lambda s: s["unique"] == 13, timeout_s=30)
    time.sleep(2)
    page.click("#btn-offline")
    wait_for(page, "window.__pipeline.server && document.querySelector('#btn-offline').classList.contains('on')")
    for _ in range(6):
        page.click("#btn-record")
        time.sleep(0.4)
    wait_for(page, "window.__pipeline.chips.backoff >= 1 && window.__pipeline.status.queued === 6")
    time.sleep(3)
    ingest.set_faults({"delay_ms": 6_000})
    page.click("#btn-offline")  # back online
    wait_for(page, "!document.querySelector('#btn-offline').classList.contains('on')")
    page.click("#btn-flush")
    wait_for(page, "window.__pipeline.chips.inflight === 6")
    for _ in range(3):
        page.click("#btn-record")
    time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate docs/demo.png from a scripted scenario")
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo.png"), help="PNG to write (default docs/demo.png)")
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="built SDK folder holding revu.js (default dist)")
    args = parser.parse_args(argv)
    dist = Path(args.dist).resolve()
    if not (dist / "revu.js").is_file():
        print(f"error: {dist / 'revu.js'} not found; build first (./dev build)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with IngestServer(db_path=":memory:") as ingest, \
            StaticServer({"/": ROOT / "demo" / "site", "/revu/": dist}) as site, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{site.url}/pipeline.html?ingest={ingest.url}")
            play(page, ingest)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            # Let the delayed batch land before the servers stop (no stray errors in the log).
            ingest.set_faults({"delay_ms": 0})
            ingest.wait_until(lambda s: s["unique"] >= 19, timeout_s=30)
        finally:
            browser.close()
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
