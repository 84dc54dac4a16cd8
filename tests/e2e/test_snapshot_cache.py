"""The memory snapshot a browser makes after its first start (js_shim/core_host/worker.js,
"snapshot cache"): a return visit restores it instead of starting Python, events still
deliver, and a corrupted cached snapshot only means a normal start (docs/serving.md)."""

from __future__ import annotations

import time

import pytest

from conftest import page_url, stored_records, wait_ready

CACHE = "revu-core-snapshot-v1"
RESTORED = "performance.getEntriesByName('revu:core:snapshot-restored').length"
CACHED_SIZES = f"""(async () => {{
    const c = await caches.open("{CACHE}");
    const out = [];
    for (const req of await c.keys()) out.push((await (await c.match(req)).arrayBuffer()).byteLength);
    return out;
}})()"""


def _wait_cached(page, good: bool = True) -> list[int]:
    """Poll Cache Storage (page.evaluate awaits the promise; wait_for_function would not)."""
    deadline = time.monotonic() + 120
    while True:
        sizes = page.evaluate(CACHED_SIZES)
        if len(sizes) == 1 and (not good or sizes[0] > 1_000_000):
            return sizes
        assert time.monotonic() < deadline, f"no snapshot cached within 120 s: {sizes}"
        page.wait_for_timeout(250)


def _first_visit_until_cached(context, url) -> list[int]:
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    assert page.evaluate(RESTORED) == 0  # nothing cached yet: a normal start
    # The snapshot is made by a second, throwaway Worker a few seconds after ready.
    sizes = _wait_cached(page, good=False)
    page.close()
    return sizes


def _record_and_flush(page, n: int) -> list[str]:
    ids = page.evaluate(f"Array.from({{length: {n}}}, (_, i) => revu.record('snap_event', {{i}}))")
    assert page.evaluate("revu.flush()") is True
    return ids


def test_second_visit_restores_from_cached_snapshot(context, site, ingest, figures):
    url = page_url(site, ingest, flushAt=100)
    sizes = _first_visit_until_cached(context, url)
    assert sizes[0] > 1_000_000  # a gzipped interpreter heap, not an empty entry
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    assert page.evaluate(RESTORED) == 1
    ids = _record_and_flush(page, 5)
    state = ingest.wait_until(lambda s: s["unique"] >= 5)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert stored_records(page) == 0
    assert page.evaluate("window.__errors.length + window.__pageErrors.length") == 0
    figures.update(sent=5, received=state["unique"], duplicates=state["duplicates"], snapshot_gzip_bytes=sizes[0])


# What is written over the cached entry: bytes that are not gzip at all, and a valid
# gzip of something that is not a revu snapshot (passes gunzip's CRC, fails the header).
CORRUPTIONS = {
    "not_gzip": "new Uint8Array(4096).fill(7)",
    "gzip_not_a_snapshot": """await new Response(new Blob([new Uint8Array(200000).fill(1)]).stream()
        .pipeThrough(new CompressionStream("gzip"))).arrayBuffer()""",
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_cached_snapshot_means_a_normal_start(context, site, ingest, figures, corruption):
    url = page_url(site, ingest, flushAt=100)
    _first_visit_until_cached(context, url)
    page = context.new_page()
    page.goto(f"{site.url}/other.html")
    page.evaluate(f"""(async () => {{
        const c = await caches.open("{CACHE}");
        const keys = await c.keys();
        const body = {CORRUPTIONS[corruption]};
        for (const req of keys) await c.put(req, new Response(body));
        return keys.length;
    }})()""")
    bad_sizes = page.evaluate(CACHED_SIZES)
    page.close()
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    assert page.evaluate(RESTORED) == 0
    ids = _record_and_flush(page, 3)
    state = ingest.wait_until(lambda s: s["unique"] >= 3)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    # The bad entry was dropped, and this normal start made a good one again.
    _wait_cached(page)
    assert page.evaluate(CACHED_SIZES) != bad_sizes
    page.close()
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    assert page.evaluate(RESTORED) == 1
    figures.update(sent=3, received=state["unique"], duplicates=state["duplicates"], corruption=corruption)
