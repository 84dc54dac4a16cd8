"""Issue 6: every value read from storage is untrusted. Tampered storage is
quarantined value by value; everything else is delivered."""

from __future__ import annotations

import json

from conftest import page_url, stored_records, wait_ready

VALID = 50

# Written before revu.js runs (an init script), beside 50 valid records.
TAMPER = """([valid]) => {
  // Init scripts also run in a new tab's initial about:blank, where Firefox
  // refuses storage ("The operation is insecure"): tamper with the test page only.
  if (!/^https?:$/.test(location.protocol)) return;
  if (sessionStorage.getItem("tampered")) return;
  const t0 = Date.now() - 60000;
  sessionStorage.setItem("tampered", "1");
  const uuid = (i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
  const rec = (id, seq, extra = {}) => JSON.stringify({v: 1, seq, env: {event_id: id, event: "stored_event",
    properties: {i: seq}, created_at: t0}, ...extra});
  for (let i = 0; i < valid; i++) localStorage.setItem(`revu:q:${uuid(i)}`, rec(uuid(i), t0 * 1000 + i));
  const bad = {
    "revu:q:garbage": "{not json",
    "revu:q:shape": JSON.stringify([1, 2, 3]),
    "revu:q:not-a-uuid": rec(uuid(0), t0 * 1000 + 900),          // a copy under another key
    [`revu:q:${uuid(901)}`]: rec(uuid(7), t0 * 1000 + 901),      // a record under another record's key
    [`revu:q:${uuid(902)}`]: JSON.stringify({v: 2, seq: 1, env: {event_id: uuid(902), event: "x", properties: {}, created_at: t0}}),
    [`revu:q:${uuid(903)}`]: `{"v":1,"seq":9007199254740993,"env":{"event_id":"${uuid(903)}","event":"x","properties":{},"created_at":${t0}}}`,
    [`revu:q:${uuid(904)}`]: rec(uuid(904), 5, {}).replace('"properties":{', '"properties":{"pad":"' + "x".repeat(1_000_000) + '",'),
    [`revu:q:${uuid(905)}`]: '{"v":1,"seq":1,"env":' + '{"a":'.repeat(3000) + '1' + '}'.repeat(3000) + '}',
    [`revu:d:${uuid(906)}`]: "][",
    "revu:rules": JSON.stringify({rulesVersion: 2, maxQueue: 0, maxEventBytes: 0}),
    "revu:consent": JSON.stringify({analytics: "yes"}),
  };
  for (const [k, v] of Object.entries(bad)) localStorage.setItem(k, v);
  // A lone surrogate an older SDK stored: repaired, not quarantined.
  localStorage.setItem(`revu:q:${uuid(950)}`, `{"v":1,"seq":${t0 * 1000 + 950},"env":{"event_id":"${uuid(950)}","event":"stored_event","properties":{"s":"cut \\\\ud83d"},"created_at":${t0}}}`);
}"""

EXPECTED_REASONS = {"not_json": 3, "key_mismatch": 2, "unknown_version": 1, "unsafe_seq": 1, "too_large": 1,
                    "too_deep": 1}


def test_tampered_storage_is_quarantined_and_the_rest_arrives(context, site, ingest, figures):
    context.add_init_script(f"({TAMPER})([{VALID}])")
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.goto(page_url(site, ingest, flushAt=1000, flushIntervalMs=600000))
    wait_ready(page)
    codes = [e["code"] for e in page.evaluate("window.__errors")]
    assert "corrupt_rules" in codes and "corrupt_consent" in codes and "quarantined" not in codes, codes
    status = page.evaluate("revu.status()")
    assert status["quarantined"] == EXPECTED_REASONS, status["quarantined"]
    assert status["repaired"] == 1
    assert status["consent"] == "unknown" and status["queued"] == VALID + 1, status
    # Unknown consent: nothing stored was purged, nothing is sent, until the page decides.
    assert page.evaluate("revu.flush()") is False
    assert ingest.state()["unique"] == 0
    assert page.evaluate("revu.consent('granted')") is True
    assert page.evaluate("revu.flush()") is True
    state = ingest.wait_until(lambda s: s["unique"] >= VALID + 1, timeout_s=30)
    sent = {e["event_id"] for e in state["events"]}
    expected = {f"00000000-0000-4000-8000-{i:012d}" for i in list(range(VALID)) + [950]}
    assert sent == expected, "the valid records, and nothing else, were sent"
    repaired = next(e for e in state["events"] if e["event_id"].endswith("950"))
    assert repaired["envelope"]["properties"]["s"] == "cut \ufffd"
    assert state["duplicates"] == 0
    entries = page.evaluate("revu.outbox.entries()")
    quarantined = [e for e in entries if e["status"] == "quarantined"]
    assert len(quarantined) == sum(EXPECTED_REASONS.values())
    assert stored_records(page) == 0, "nothing left to be re-sent"
    keys = page.evaluate("Object.keys(localStorage)")
    assert sum(k.startswith("revu:x:") for k in keys) == sum(EXPECTED_REASONS.values())
    assert page.evaluate("JSON.parse(localStorage.getItem('revu:rules')).maxQueue") == 1000, "rules republished"
    # A reload sends nothing again and finds nothing new to quarantine.
    page.reload()
    wait_ready(page)
    assert page.evaluate("revu.status().quarantined") == {}
    assert page.evaluate("revu.flush()") is True
    assert ingest.state()["unique"] == VALID + 1 and ingest.state()["requests_total"] == state["requests_total"]
    assert page_errors == [] and page.evaluate("window.__pageErrors") == []
    figures.update(valid_stored=VALID, received=len(sent), quarantined=EXPECTED_REASONS, repaired=1,
                   duplicates=state["duplicates"])


def test_corrupt_rules_never_hang_or_refuse_before_the_core_runs(context, site, ingest):
    context.add_init_script("""
      if (!sessionStorage.getItem("t")) {
        sessionStorage.setItem("t", "1");
        localStorage.setItem("revu:rules", JSON.stringify({rulesVersion: 2, maxQueue: 0, maxEventBytes: 0, maxBatchBytes: -1}));
      }
    """)
    page = context.new_page()
    page.goto(page_url(site, ingest, record=30, flushAt=1000), wait_until="commit")
    page.wait_for_function("window.__startIds && window.__startIds.length === 30", timeout=30_000)
    ids = page.evaluate("window.__startIds")
    assert all(isinstance(i, str) for i in ids), "records before the core are accepted, not refused by the bad rules"
    wait_ready(page)
    assert page.evaluate("revu.status().queued") == 30
    assert page.evaluate("revu.flush()") is True
    assert {e["event_id"] for e in ingest.state()["events"]} == set(ids)
