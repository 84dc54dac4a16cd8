"""End-to-end fixtures: the reference ingest server, a static server for the
test pages and dist/, and a browser of each engine: Debian's Chromium
(Playwright) and Debian's Firefox ESR (WebDriver BiDi), behind one facade
(tests/e2e/harness, docs/browsers.md).

Every test that uses ``browser`` or ``context`` runs once per engine; its id
names the engine (``test_wire_format[firefox]``). ``REVU_E2E_ENGINES=firefox``
(a comma list) runs a subset. One browser per engine per session, a fresh
context (Chromium: BrowserContext, Firefox: user context) per test.

The page (http://127.0.0.1:<site port>) and the ingest server
(http://127.0.0.1:<ingest port>) are different origins, as in production,
so every request is a real CORS request.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

from harness import launch, selected_engines  # noqa: E402
FIGURES: list[dict] = []


@pytest.fixture(scope="session")
def ingest(tmp_path_factory):
    db = tmp_path_factory.mktemp("ingest") / "events.sqlite3"
    server = IngestServer(db_path=str(db)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gen_root(tmp_path_factory):
    return tmp_path_factory.mktemp("gen")


@pytest.fixture
def gen_dir(gen_root):
    """A folder served at /gen/ on the site's origin, for pages a test writes."""
    return gen_root


@pytest.fixture(scope="session")
def site(gen_root):
    dist = ROOT / "dist"
    if not (dist / "revu.js").is_file():
        pytest.exit("dist/revu.js is missing: run ./dev build first", returncode=2)
    server = StaticServer({"/": ROOT / "tests" / "e2e" / "pages", "/revu/": dist, "/gen/": gen_root}).start()
    yield server
    server.stop()


def pytest_generate_tests(metafunc):
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", selected_engines(), scope="session")


@pytest.fixture(scope="session")
def browser(engine):
    browser = launch(engine)
    yield browser
    browser.close()


@pytest.fixture
def context(browser, ingest):
    ingest.reset()
    context = browser.new_context()
    yield context
    # Closing the pages fires their unload beacons: keep them from reaching
    # the next test (the ingest drops them while "offline"; reset() clears it).
    ingest.set_faults({"offline": True})
    context.close()
    time.sleep(0.3)


@pytest.fixture
def figures(request):
    """Record the figures a test proves (sent, received, duplicates)."""
    entry = {"test": request.node.name}  # the name carries the engine: test_x[firefox]
    FIGURES.append(entry)
    return entry


def page_url(site, ingest, page="index.html", **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"ingest": ingest.url, **params}.items())
    return f"{site.url}/{page}?{query}"


def wait_ready(page, timeout_ms=60_000):
    page.wait_for_function("window.__readyState !== 'pending'", timeout=timeout_ms)
    state = page.evaluate("window.__readyState")
    assert state == "ready", state


def stored_records(page) -> int:
    return page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('revu:q:')).length")


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("revu e2e figures")
    for entry in FIGURES:
        terminalreporter.write_line(json.dumps(entry))


def crash_renderer(browser, page) -> None:
    """Kill a page's renderer the way a crash would: no pagehide, no beacon.
    Chromium: CDP Page.crash on the page's target. Firefox: SIGKILL of the
    page's own content process (its pid read from the parent process), which
    takes down that tab alone (docs/browsers.md "Crash"). ``browser`` is kept
    for the callers' sake; the page knows its engine."""
    del browser
    page.crash()
