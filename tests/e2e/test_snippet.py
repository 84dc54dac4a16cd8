"""Issue 8: the copy-paste snippet (dist/snippet.min.js inline in a page):
calls made before revu.js arrives are replayed in order with the ids the stub
returned, and the stub's promises settle like the real ones."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, wait_ready

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>snippet</title>
<script>{snippet}</script>
<script>
  window.__errors = [];
  revu.on("error", (e) => window.__errors.push(e.code));
  revu.init({{apiKey: "snippet-key", host: new URLSearchParams(location.search).get("ingest")}});
  window.__ids = [revu.record("early", {{n: 1}}), revu.record("early", {{n: 2}}), revu.record(42)];
  window.__flushed = revu.flush();
  window.__loadedBefore = !!revu.version;
  window.__readyState = "pending";
  revu.ready.then(() => (window.__readyState = "ready"), (e) => (window.__readyState = "failed: " + e));
</script></head><body></body></html>"""


def test_the_snippet_queues_calls_until_revu_js_arrives(context, site, ingest, gen_dir, figures):
    snippet = (ROOT / "dist" / "snippet.min.js").read_text().strip()
    assert len(snippet.encode()) < 1000, f"the snippet is {len(snippet.encode())} bytes"
    (gen_dir / "snippet.html").write_text(PAGE.format(snippet=snippet))
    page = context.new_page()
    page.goto(f"{site.url}/gen/snippet.html?ingest={ingest.url}")
    assert page.evaluate("window.__loadedBefore") is False, "the calls ran on the stub"
    ids = page.evaluate("window.__ids")
    assert isinstance(ids[0], str) and isinstance(ids[1], str) and ids[2] is not None, ids
    wait_ready(page)
    assert page.evaluate("window.__flushed") is True, "the stub's flush() settled with the real result"
    state = ingest.wait_until(lambda s: set(ids[:2]) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
    early = sorted((e["envelope"]["properties"]["n"], e["event_id"]) for e in state["events"])
    assert [i for _, i in early] == ids[:2], "replayed in order, with the ids the stub returned"
    assert page.evaluate("window.__errors") == ["invalid_event"], "bad input is refused after replay, as always"
    assert page.evaluate("typeof revu.record('later', {})") == "string"
    assert page.evaluate("revu.version") is not None
    figures.update(snippet_bytes=len(snippet.encode()), early=2, received=len(early))
