"""Issue 6: one bad value must never stop delivery. Hostile page input, in
real headless Chromium against the reference server on another origin."""

from __future__ import annotations

import os
import random
from pathlib import Path

from conftest import page_url, wait_ready

HOSTILE_JS = (Path(__file__).parent / "hostile.js").read_text()


def test_seeded_fuzz_of_the_public_api_loses_no_valid_event(context, site, ingest, figures):
    seed = int(os.environ.get("REVU_FUZZ_SEED") or random.SystemRandom().randrange(2**31))
    print(f"\nhostile-input fuzz seed: {seed} (replay with REVU_FUZZ_SEED={seed})")
    figures.update(seed=seed)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.goto(page_url(site, ingest, debug=0, maxQueue=20000, flushAt=50))
    wait_ready(page)
    result = page.evaluate(HOSTILE_JS, {"seed": seed, "calls": 10_000, "valid": 500})
    assert result["escaped"] == [], result["escaped"][:5]
    valid = result["valid"]
    assert len(valid) == 500 and all(isinstance(i, str) for i in valid), "every valid record() returned its id"
    assert result["flushesSettledAsBooleans"], "every flush() promise settled with true or false"
    assert result["polluted"] is False, "a __proto__ key polluted Object.prototype"
    final = page.evaluate("revu.flush()")
    assert final is True, ("a final flush() resolves true", page.evaluate("revu.status()"),
                           [e for e in page.evaluate("window.__events") if e["name"] == "outbox:failed"][:3])
    state = ingest.wait_until(lambda s: set(valid) <= {e["event_id"] for e in s["events"]}, timeout_s=60)
    received = {e["event_id"] for e in state["events"]}
    assert set(valid) <= received, f"{len(set(valid) - received)} valid events missing"
    status = page.evaluate("revu.status()")
    assert status["ready"] is True and status["durable"] is True and status["memoryOnly"] is False, status
    assert status["coreErrors"] == 0, status
    assert page.evaluate("window.__pageErrors") == [] and page_errors == [], page_errors
    errors = page.evaluate("window.__errors")
    codes = {e["code"] for e in errors}
    assert not [e for e in errors if e["code"].endswith("_failed")], [e for e in errors if e["code"].endswith("_failed")][:3]
    assert codes <= {"invalid_event", "invalid_properties", "invalid_options", "unserialisable", "too_deep",
                     "too_many_members", "too_large", "already_initialised", "invalid_consent", "invalid_listener",
                     "invalid_mutation"}, codes
    # The same origin still works after a reload.
    page.reload()
    wait_ready(page)
    after = page.evaluate("Array.from({length: 20}, (_, i) => revu.record('after_reload', {i}))")
    assert page.evaluate("revu.flush()") is True
    state = ingest.wait_until(lambda s: set(after) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
    figures.update(calls=sum(result["calls"].values()), hostile_records=result["records"],
                   hostile_accepted=result["accepted"], valid_sent=500,
                   valid_received=len(set(valid) & {e["event_id"] for e in state["events"]}),
                   after_reload=len(after), error_codes=sorted(codes))


def test_a_huge_option_is_refused_and_the_page_stays_durable(context, site, ingest):
    page = context.new_page()
    page.goto(page_url(site, ingest, debug=0, flushAt=100))
    wait_ready(page)
    out = page.evaluate("""() => {
      const six = "c".repeat(6 * 1024 * 1024);
      return [revu.record("e", {}, {category: six}), revu.record("e", {}, {stream: six}),
              revu.record("e", {}, {keys: {k: six}}), revu.record(six), revu.record("ok", {})];
    }""")
    assert out[:4] == [None] * 4 and isinstance(out[4], str)
    assert page.evaluate("revu.status().durable") is True
    assert [e["code"] for e in page.evaluate("window.__errors")] == ["invalid_options"] * 3 + ["invalid_event"]
    assert page.evaluate("revu.flush()") is True


def test_a_first_visit_applies_the_pages_own_caps_before_the_core_runs(context, site, ingest, figures):
    ingest.set_faults({"offline": True})
    page = context.new_page()
    page.goto(page_url(site, ingest, debug=0, maxQueue=20000, record=10000), wait_until="commit")
    page.wait_for_function("window.__startIds && window.__startIds.length === 10000", timeout=60_000)
    early = page.evaluate("({ready: revu.status().ready, stored: Object.keys(localStorage).filter(k => k.startsWith('revu:q:')).length})")
    wait_ready(page)
    status = page.evaluate("revu.status()")
    assert status["queued"] == 10000, status
    assert status["dropped"].get("overflow", 0) == 0
    figures.update(recorded_before_ready=10000, ready_when_done=early["ready"], stored=early["stored"],
                   queued_after_ready=status["queued"])
