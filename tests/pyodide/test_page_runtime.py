"""A page written in Python: the revu wheel from dist/ installed with micropip,
then ``import revu; revu.init(...); revu.record(...); await revu.flush()``
delivering to the reference ingest server (node and Chromium runtimes; in
Chromium the request is cross-origin, as in production).

Run with: pytest tests/pyodide --runtime node,chrome --dist-dir=build/pyodide-test-dist
"""

import sys
from pathlib import Path

import pytest
from pytest_pyodide import run_in_pyodide

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402


@pytest.fixture(scope="module")
def ingest():
    server = IngestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wheel():
    [path] = sorted((ROOT / "dist").glob("revu-*-py3-none-any.whl"))
    return path


@run_in_pyodide(packages=["micropip"])
async def _python_page(selenium, wheel_name, wheel_bytes, host):
    import sys

    import micropip

    for name in [m for m in sys.modules if m == "revu" or m.startswith("revu.")]:
        del sys.modules[name]  # another test may have loaded the lock's copy
    path = f"/tmp/{wheel_name}"
    with open(path, "wb") as out:
        out.write(wheel_bytes)
    await micropip.install(f"emfs:{path}", reinstall=True)

    import revu

    revu.init("test-key", host=host, flush_interval_ms=60_000)
    ids = [revu.record("python.page", {"i": i}) for i in range(7)]
    try:
        revu.record("", {})
    except revu.RecordError as exc:
        refused = exc.code
    ok = await revu.flush(10)
    # The first reply said whether the endpoint takes gzip: a larger batch goes compressed.
    ids += [revu.record("python.page.big", {"i": i, "pad": "x" * 200}) for i in range(20)]
    ok = ok and await revu.flush(10)
    status = revu.status()
    revu.close()
    return ids, refused, ok, status["acked"], status["storage"], status["durable"]


def test_python_page_installs_the_dist_wheel_and_delivers(selenium, ingest, wheel):
    ingest.reset()
    ids, refused, ok, acked, storage, durable = _python_page(selenium, wheel.name, wheel.read_bytes(), ingest.url)
    assert refused == "invalid_event"
    assert ok is True and acked == 27
    state = ingest.wait_until(lambda s: s["unique"] >= 27, timeout_s=10)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert state["duplicates"] == 0
    assert [r["content_encoding"] for r in state["requests"]] == [None, "gzip"]
    # Chromium has localStorage (durable); Node has none (memory, reported).
    assert (storage, durable) in (("localStorage", True), ("memory", False))
    print(f"[pyodide page] runtime={selenium.browser} storage={storage} events={len(ids)} "
          f"requests={state['requests_total']}")
