"""Issue 11: on a metered or slow connection (Network Information API,
overridden here) drains are paced; high priority and flush() never wait."""

from __future__ import annotations

import time

from conftest import page_url, wait_ready

FAKE_CONNECTION = """
  const connection = new EventTarget();
  connection.saveData = true;
  connection.effectiveType = "4g";
  Object.defineProperty(Navigator.prototype, "connection", { get: () => connection, configurable: true });
  window.__setNetwork = (saveData, effectiveType) => {
    connection.saveData = saveData;
    connection.effectiveType = effectiveType;
    connection.dispatchEvent(new Event("change"));
  };
"""


def _events(ingest):
    return {e["event_id"] for e in ingest.state()["events"]}


def test_save_data_paces_drains_and_high_priority_never_waits(context, site, ingest, figures):
    context.add_init_script(FAKE_CONNECTION)
    ingest.set_faults({"offline": True})
    page = context.new_page()
    page.goto(page_url(site, ingest, debug=0))
    wait_ready(page)
    assert page.evaluate("revu.status().network") == {"saveData": True, "effectiveType": "4g", "slow": True}
    ids = page.evaluate("Array.from({length: 200}, (_, i) => revu.record('metered', {i}))")
    ingest.set_faults({"offline": False})
    context.set_offline(True)
    context.set_offline(False)  # "online": a drain starts, paced
    state = ingest.wait_until(lambda s: s["unique"] >= 1, timeout_s=30)
    time.sleep(3)
    first = _events(ingest)
    assert 0 < len(first) <= 50, f"one maxBatch request, then a wait ({len(first)} sent)"
    urgent = page.evaluate("revu.record('urgent', {}, {priority: 'high'})")
    ingest.wait_until(lambda s: urgent in {e["event_id"] for e in s["events"]}, timeout_s=10)
    assert len(_events(ingest) - {urgent}) == len(first), "only the high-priority event went"
    assert page.evaluate("revu.flush()") is True, "flush() never waits"
    assert set(ids) <= _events(ingest)
    figures.update(queued=200, sent_in_first_3s=len(first), requests=state["requests_total"])


def test_a_fast_connection_again_resumes_the_drain(context, site, ingest):
    context.add_init_script(FAKE_CONNECTION)
    ingest.set_faults({"offline": True})
    page = context.new_page()
    page.goto(page_url(site, ingest, debug=0))
    wait_ready(page)
    page.evaluate("window.__setNetwork(false, '2g')")
    page.wait_for_function("revu.status().network.effectiveType === '2g'")
    ids = page.evaluate("Array.from({length: 120}, (_, i) => revu.record('slow', {i}))")
    ingest.set_faults({"offline": False})
    context.set_offline(True)
    context.set_offline(False)
    ingest.wait_until(lambda s: s["unique"] >= 1, timeout_s=30)
    time.sleep(2)
    assert len(_events(ingest)) <= 50
    page.evaluate("window.__setNetwork(false, '4g')")
    ingest.wait_until(lambda s: set(ids) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
