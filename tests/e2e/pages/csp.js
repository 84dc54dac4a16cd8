// The page script of csp.html: ?ingest=URL
const params = new URLSearchParams(location.search);
window.__errors = [];
revu.on("error", (e) => window.__errors.push(e));
revu.init({ apiKey: "e2e-key", host: params.get("ingest"), flushAt: 1 });
window.__readyState = "pending";
revu.ready.then(() => (window.__readyState = "ready"), (e) => (window.__readyState = "failed: " + e));
window.__id = revu.record("csp_event", { ok: true });
