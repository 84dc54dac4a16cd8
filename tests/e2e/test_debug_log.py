"""Issue 8: `debug: true` prints a banner and one readable line per decision;
`debug: "verbose"` adds one line per recorded event."""

from __future__ import annotations

from conftest import page_url, wait_ready


def _console(page):
    lines: list[str] = []
    page.on("console", lambda m: lines.append(m.text) if m.text.startswith("[revu]") else None)
    return lines


def test_debug_prints_a_banner_and_each_decision(context, site, ingest):
    ingest.set_faults({"script": [{"status": 503, "retry_after": "1"}]})
    page = context.new_page()
    lines = _console(page)
    page.goto(page_url(site, ingest, flushAt=5, maxQueue=8, maxBatch=5))
    wait_ready(page)
    page.evaluate("Array.from({length: 5}, (_, i) => revu.record('e', {i}))")
    page.wait_for_function("revu.status().acked >= 5", timeout=30_000)
    page.evaluate("Array.from({length: 12}, (_, i) => revu.record('burst', {i}, {priority: 'low'}))")
    page.evaluate("revu.flush()")
    text = "\n".join(lines)
    for expected in ["[revu] revu 0.1.0: sending to", "this tab leads", "core ready in", "sent b1: 5 events, ",
                     "failed (http_503); retry #1 in", "acked b2: 5 events (HTTP 200)", "(overflow)"]:
        assert expected in text, (expected, text[-2000:])
    assert "recorded e " not in text, "no per-event lines without verbose"


def test_verbose_adds_a_line_per_recorded_event(context, site, ingest):
    page = context.new_page()
    lines = _console(page)
    page.goto(page_url(site, ingest, flushAt=100) + "&verbose=1")
    wait_ready(page)
    ids = page.evaluate("Array.from({length: 3}, (_, i) => revu.record('v', {i}))")
    page.wait_for_timeout(100)
    for event_id in ids:
        assert any(f"recorded v {event_id}: stored (localStorage)" in line for line in lines), lines[-5:]
