"""Fixtures for the docs' examples: the reference ingest server, a static site
with dist/ at /revu/, and headless Chromium."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HARNESS = """<!doctype html><meta charset="utf-8"><title>example</title>
<script src="/revu/revu.js"></script>
<script>
  window.__errors = [];
  revu.on("error", (e) => window.__errors.push(e));
  revu.init({ apiKey: "docs-example", host: "HOST" });
</script>"""
WATCH = """<script>
  window.__errors = window.__errors || [];
  window.__pageErrors = [];
  addEventListener("error", (e) => window.__pageErrors.push(String(e.message)));
  addEventListener("unhandledrejection", (e) => window.__pageErrors.push(String(e.reason)));
</script>"""


@pytest.fixture(scope="session")
def example_ingest():
    server = IngestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _example_site(tmp_path_factory):
    dist = ROOT / "dist"
    if not (dist / "revu.js").is_file():
        pytest.exit("dist/revu.js is missing: run ./dev build first", returncode=2)
    pages = tmp_path_factory.mktemp("example-pages")
    server = StaticServer({"/": pages, "/revu/": dist}).start()
    yield server, pages
    server.stop()


@pytest.fixture(scope="session")
def _chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield browser
        browser.close()


class ExamplePage:
    def __init__(self, browser, site, pages: Path, ingest):
        self.browser, self.site, self.pages, self.ingest = browser, site, pages, ingest

    def _open(self, name: str, html: str):
        (self.pages / name).write_text(html)
        context = self.browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{self.site.url}/{name}")
        return context, page, errors

    def _settle(self, page, errors):
        page.wait_for_function("(window.__pageErrors || []).length > 0 || (window.revu && revu.status && revu.status().ready === true)",
                               timeout=60_000)
        assert errors == [] and page.evaluate("window.__pageErrors || []") == [], errors

    def run_html(self, html: str) -> None:
        self.ingest.reset()
        html = html.replace("<head>", "<head>" + WATCH, 1) if "<head>" in html else WATCH + html
        context, page, errors = self._open("example.html", html)
        try:
            self._settle(page, errors)
            recorded = page.evaluate("revu.status().acked + revu.status().queued")
            if recorded:
                assert page.evaluate("revu.flush()") is True
                self.ingest.wait_until(lambda s: s["unique"] >= recorded, timeout_s=30)
            assert page.evaluate("(window.__errors || []).length") == 0, page.evaluate("window.__errors")
        finally:
            context.close()
            time.sleep(0.2)

    def run_js(self, code: str) -> None:
        self.ingest.reset()
        context, page, errors = self._open("harness.html", WATCH + HARNESS.replace("HOST", self.ingest.url))
        try:
            self._settle(page, errors)
            page.evaluate(f"async () => {{ {code}\n }}")
            assert page.evaluate("window.__errors") == [], page.evaluate("window.__errors")
            assert errors == [], errors
        finally:
            context.close()
            time.sleep(0.2)


@pytest.fixture
def example_page(_chromium, _example_site, example_ingest):
    site, pages = _example_site
    return ExamplePage(_chromium, site, pages, example_ingest)
