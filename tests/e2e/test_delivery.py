"""Issue 2 acceptance, in headless Chromium and Firefox ESR against the reference server."""

from __future__ import annotations

import re
import time

import pytest

from conftest import page_url, stored_records, wait_ready

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _record(page, n, name="e2e_event", **props):
    return page.evaluate(
        "([n, name, props]) => Array.from({length: n}, (_, i) => revu.record(name, {...props, i}))",
        [n, name, props],
    )


def _ingest_unreachable(ingest, down=True):
    """Make only the ingest unreachable: the server closes every event request
    without a reply. (Playwright's route() and set_offline() do not stop
    beacons sent during unload, so they cannot simulate this.)"""
    ingest.set_faults({"offline": down})


def test_wire_format(context, site, ingest, figures):
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=100))
    wait_ready(page)
    ids = _record(page, 7, plan="pro")
    assert page.evaluate("revu.flush()") is True
    state = ingest.state()
    assert state["unique"] == 7 and state["duplicates"] == 0
    for request in state["requests"]:
        assert request["body_keys"] == ["api_key", "batch"]
        assert request["api_key"] == "e2e-key"
        assert request["content_type"].startswith("application/json")
        assert request["origin"] == site.url
    received = {e["event_id"]: e["envelope"] for e in state["events"]}
    assert set(received) == set(ids)
    for env in received.values():
        assert UUID.match(env["event_id"])
        assert env["event"] == "e2e_event" and env["properties"]["plan"] == "pro"
        assert isinstance(env["created_at"], int) and isinstance(env["sent_at"], int)
        assert env["sent_at"] >= env["created_at"]
    assert stored_records(page) == 0
    figures.update(sent=7, received=state["unique"], duplicates=state["duplicates"])


def test_500_recorded_offline_reload_then_online(context, site, ingest, figures):
    _ingest_unreachable(ingest)
    page = context.new_page()
    page.goto(page_url(site, ingest))
    wait_ready(page)
    ids = _record(page, 500, name="offline_event")
    assert stored_records(page) == 500
    page.reload()
    wait_ready(page)
    assert page.evaluate("revu.status().queued") == 500
    assert ingest.state()["unique"] == 0
    # The first send after the reload fails. It may come up to 12 s after the
    # reload: a request of the first page that was still open when it unloaded
    # (Firefox re-sends a request whose connection closed before failing it) is
    # "in flight" until its timeout plus 2 s, and the new page does not send its
    # events before then (README, Many tabs).
    page.wait_for_function("revu.status().failures >= 1", timeout=25_000)
    # Connectivity returns: the ingest is reachable again and the browser fires `online`.
    context.set_offline(True)
    _ingest_unreachable(ingest, down=False)
    context.set_offline(False)
    state = ingest.wait_until(lambda s: s["unique"] >= 500, timeout_s=30)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    page.wait_for_function("revu.status().queued === 0")
    assert stored_records(page) == 0
    # A backlog on a visible page drains in large batches (drainBatch 1000,
    # drainBatchBytes 512 KiB), not maxBatch: fewer requests.
    ok = [r for r in state["requests"] if r["outcome"] == "ok"]
    assert max(r["n"] for r in ok) <= 1000 and max(r["body_bytes"] for r in ok) <= 524_288
    assert page.evaluate("revu.status().failures") == 0
    figures.update(sent=500, received=state["unique"], duplicates=state["duplicates"],
                   requests=state["requests_total"])


# What a device that is offline shows every document, also one loaded while
# offline (Chromium's emulation reports such a document as online).
DEVICE_OFFLINE = """(() => {
  const desc = Object.getOwnPropertyDescriptor(Navigator.prototype, "onLine");
  Object.defineProperty(Navigator.prototype, "onLine", {configurable: true,
    get() { return localStorage.getItem("test:offline") === "1" ? false : desc.get.call(this); }});
})();"""


def test_an_offline_device_does_not_beacon_and_the_next_page_sends_at_once(context, site, ingest, figures):
    """A beacon cannot leave an offline device; had revu "sent" one, the next
    page would hold those events back until the beacon could have landed."""
    context.add_init_script(DEVICE_OFFLINE)
    page = context.new_page()
    page.goto(page_url(site, ingest))
    wait_ready(page)
    page.evaluate("localStorage.setItem('test:offline', '1'); dispatchEvent(new Event('offline'))")
    ids = _record(page, 40, name="offline_device")
    before = ingest.state()["requests_total"]
    page.reload()
    wait_ready(page)
    assert ingest.state()["requests_total"] == before, "no beacon (nor anything else) left the offline device"
    assert page.evaluate("Object.keys(JSON.parse(localStorage.getItem('revu:inflight') || '{}')).length") == 0
    t0 = time.monotonic()
    page.evaluate("localStorage.removeItem('test:offline'); dispatchEvent(new Event('online'))")
    state = ingest.wait_until(lambda s: s["unique"] >= 40, timeout_s=15)
    took = time.monotonic() - t0
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert took < 6, f"the stored events waited {took:.1f} s (held for a beacon that never left?)"
    figures.update(sent=40, received=state["unique"], duplicates=state["duplicates"], seconds_to_all=round(took, 2))


def test_50_recorded_at_script_start_then_reload_before_ready(context, site, ingest, figures):
    page = context.new_page()
    page.goto(page_url(site, ingest, record=50), wait_until="commit")
    page.wait_for_function("window.__startIds && window.__startIds.length === 50")
    start = page.evaluate("({ids: window.__startIds, ready: revu.status().ready, stored: "
                          "Object.keys(localStorage).filter(k => k.startsWith('revu:q:')).length})")
    assert start["ready"] is False, "the reload must happen before the core is live"
    assert start["stored"] >= 50, "durable before record() returned"
    page.goto(page_url(site, ingest))  # the reload, without recording again
    wait_ready(page)
    state = ingest.wait_until(lambda s: set(start["ids"]) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
    page.wait_for_function("revu.status().queued === 0")
    figures.update(sent=50, received=len(set(start["ids"]) & {e["event_id"] for e in state["events"]}),
                   duplicates=state["duplicates"])


def _thirty_then(context, site, ingest, leave):
    page = context.new_page()
    # flushAt/interval high: nothing goes out before the page leaves.
    page.goto(page_url(site, ingest, flushAt=100, flushIntervalMs=600000))
    wait_ready(page)
    ids = _record(page, 30, name="last_words")
    assert ingest.state()["unique"] == 0
    leave(page)
    state = ingest.wait_until(lambda s: s["unique"] >= 30, timeout_s=15)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    return state


def test_30_events_then_tab_closed(context, site, ingest, figures):
    state = _thirty_then(context, site, ingest, lambda page: page.close(run_before_unload=True))
    figures.update(sent=30, received=state["unique"], duplicates=state["duplicates"],
                   requests=state["requests_total"])


def test_30_events_then_navigate_away(context, site, ingest, figures):
    state = _thirty_then(context, site, ingest, lambda page: page.goto(f"{site.url}/other.html"))
    figures.update(sent=30, received=state["unique"], duplicates=state["duplicates"],
                   requests=state["requests_total"])


def test_30_events_then_leaving_at_once_with_default_options_arrive_once(browser, site, ingest, figures):
    """With the defaults (flushAt 20) a keepalive request of 20 events is
    decided in the core's Worker while the page is already leaving: the send
    and the unload beacon cross. Whatever the order, no event may go twice.
    (Each round in a fresh context: the next page of the same origin re-sends
    what a beacon carried once it can no longer be in flight, a counted,
    documented duplicate that is not this test's subject.)"""
    duplicates, requests = [], []
    for round_ in range(10):
        ingest.reset()
        context = browser.new_context()
        page = context.new_page()
        page.goto(page_url(site, ingest))
        wait_ready(page)
        ids = _record(page, 30, name=f"leaving_{round_}")
        if round_ % 2:
            page.goto(f"{site.url}/other.html")
        else:
            page.close(run_before_unload=True)
        state = ingest.wait_until(lambda s: s["unique"] >= 30, timeout_s=15)
        time.sleep(1.0)  # a late copy would arrive by now
        state = ingest.state()
        assert {e["event_id"] for e in state["events"]} == set(ids)
        duplicates.append(state["duplicates"])
        requests.append(state["requests_total"])
        ingest.set_faults({"offline": True})
        context.close()
    figures.update(rounds=10, sent_each=30, duplicates=duplicates, requests=requests)
    assert duplicates == [0] * 10, duplicates


def test_backoff_503_x3_then_429_retry_after_then_200(context, site, ingest, figures):
    ingest.set_faults({"script": [{"status": 503}, {"status": 503}, {"status": 503},
                                  {"status": 429, "retry_after": "1"}]})
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=1))
    wait_ready(page)
    ids = _record(page, 3, name="retried")
    # Events are stored a moment before the request's own log entry is final.
    state = ingest.wait_until(lambda s: s["unique"] >= 3 and all(r["status"] for r in s["requests"]), timeout_s=40)
    assert {e["event_id"] for e in state["events"]} == set(ids)
    times = [r["at_ms"] for r in state["requests"]]
    statuses = [r["status"] for r in state["requests"]]
    assert statuses[:5] == [503, 503, 503, 429, 200]
    gaps = [b - a for a, b in zip(times, times[1:5])]
    # Nominal 1 s, 2 s, 4 s, then 8 s (Retry-After 1 s is below the backoff);
    # jitter takes off at most 20%; allow scheduling slack on top.
    for gap, nominal in zip(gaps, [1000, 2000, 4000, 8000]):
        assert 0.8 * nominal - 50 <= gap <= nominal + 1500, (gaps, nominal)
    page.wait_for_function("revu.status().failures === 0 && revu.status().queued === 0")
    figures.update(sent=3, received=state["unique"], duplicates=state["duplicates"], gaps_ms=gaps)


def test_storage_throwing_on_every_write_falls_back_to_memory(context, site, ingest, figures):
    context.add_init_script("""
      Storage.prototype.setItem = function () {
        throw new DOMException("quota exceeded (test)", "QuotaExceededError");
      };
    """)
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=100))
    wait_ready(page)
    ids = _record(page, 12, name="memory_event")
    assert all(ids), "record() still returns ids"
    status = page.evaluate("revu.status()")
    assert status["memoryOnly"] is True and status["durable"] is False and status["storage"] == "memory"
    assert any(e["code"] == "storage_unavailable" for e in page.evaluate("window.__errors"))
    assert page.evaluate("revu.flush()") is True
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(ids)
    figures.update(sent=12, received=state["unique"], duplicates=state["duplicates"])


def test_bad_input_never_throws_and_loses_nothing_else(context, site, ingest):
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=100))
    wait_ready(page)
    results = page.evaluate("""() => {
      const cyclic = {}; cyclic.self = cyclic;
      return [
        revu.record(""), revu.record(42), revu.record("x", [1, 2]), revu.record("x", cyclic),
        revu.record("x", {big: "y".repeat(40000)}), revu.record("x", {}, {priority: "urgent"}),
        revu.record("x", {n: 10n}), revu.record("good", {ok: true}),
      ];
    }""")
    assert results[:-1] == [None] * 7
    assert UUID.match(results[-1])
    codes = [e["code"] for e in page.evaluate("window.__errors")]
    assert codes == ["invalid_event", "invalid_event", "invalid_properties", "unserialisable",
                     "too_large", "invalid_options", "unserialisable"]
    assert page.evaluate("revu.flush()") is True
    assert [e["event_id"] for e in ingest.state()["events"]] == [results[-1]]
