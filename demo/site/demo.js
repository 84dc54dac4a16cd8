// revu demo page: drives the SDK and shows what the ingest server received.
// Plain browser JavaScript, no framework, no external assets.
"use strict";

(function () {
  const DEFAULT_INGEST = "http://127.0.0.1:8787";
  const INGEST = (new URLSearchParams(location.search).get("ingest") || DEFAULT_INGEST).replace(/\/+$/, "");
  const STATUS_EVERY_MS = 500;
  const SERVER_EVERY_MS = 1000;
  const LOG_MAX = 200;

  const $ = (id) => document.getElementById(id);

  $("page-origin").textContent = location.origin;
  $("ingest-url").textContent = INGEST;

  /** Show a problem that stops the demo from working at all. */
  function fatal(message) {
    const box = $("fatal");
    box.textContent = message;
    box.hidden = false;
  }

  function setBadge(el, text, kind) {
    el.textContent = text;
    el.className = "badge badge-" + kind;
  }

  /** JSON for display: never throws, long values cut. */
  function show(value, max) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      text = String(value);
    }
    if (text === undefined) text = String(value);
    return max && text.length > max ? text.slice(0, max) + "…" : text;
  }

  function clock(ms) {
    const d = ms === undefined ? new Date() : new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function fillSummary(dl, pairs) {
    dl.replaceChildren();
    for (const [label, value] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value === undefined || value === null ? "—" : String(value);
      dl.append(dt, dd);
    }
  }

  // ---- the SDK -----------------------------------------------------------

  const revu = window.revu;
  if (!revu || typeof revu.init !== "function") {
    fatal("revu.js did not load from /revu/revu.js. Build the SDK (npm run build) and serve dist/ at /revu/ " +
      "(python demo/run_demo.py does both).");
    setBadge($("core-badge"), "core: missing", "bad");
  } else {
    try {
      revu.init({ apiKey: "demo-key", host: INGEST, debug: true });
    } catch (err) {
      fatal("revu.init threw: " + err);
    }
  }

  let readyState = "loading";
  if (revu && revu.ready && typeof revu.ready.then === "function") {
    const startedAt = performance.now();
    revu.ready.then(
      () => {
        readyState = "ready";
        const ms = Math.round(performance.now() - startedAt);
        setBadge($("core-badge"), "core: ready (" + ms + " ms)", "ok");
        log("ready", "Python core is live after " + ms + " ms");
      },
      (err) => {
        readyState = "failed";
        setBadge($("core-badge"), "core: failed", "bad");
        log("ready", "revu.ready rejected: " + err);
      },
    );
  }

  // ---- SDK event log -----------------------------------------------------

  function log(name, payload) {
    const list = $("event-log");
    const item = document.createElement("li");
    item.className = "log-" + name.replace(/[^a-z]/gi, "-");
    const time = document.createElement("time");
    time.textContent = clock();
    const tag = document.createElement("b");
    tag.textContent = name;
    const body = document.createElement("span");
    body.textContent = typeof payload === "string" ? payload : show(payload, 400);
    item.append(time, " ", tag, " ", body);
    list.prepend(item);
    while (list.children.length > LOG_MAX) list.lastElementChild.remove();
  }

  $("btn-clear-log").addEventListener("click", () => $("event-log").replaceChildren());

  if (revu && typeof revu.on === "function") {
    for (const name of ["outbox:update", "outbox:flushed", "outbox:failed", "error"]) {
      try {
        revu.on(name, (detail) => log(name, detail));
      } catch (err) {
        log("error", "revu.on(" + name + ") threw: " + err);
      }
    }
  }

  // ---- record and flush --------------------------------------------------

  const recordResult = $("record-result");
  let recordedCount = 0;

  function record(name, properties) {
    if (!revu || typeof revu.record !== "function") return null;
    try {
      return revu.record(name, properties);
    } catch (err) {
      // record() must never throw; if it does, that is a bug worth showing.
      log("error", "revu.record threw: " + err);
      return null;
    }
  }

  $("record-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("event-name").value.trim();
    recordedCount += 1;
    const id = record(name, { source: "demo", n: recordedCount, at: new Date().toISOString() });
    recordResult.textContent = id
      ? "recorded " + name + " → " + id
      : "record(" + show(name) + ") returned null (see the log)";
  });

  $("btn-record-100").addEventListener("click", () => {
    const t0 = performance.now();
    let ok = 0;
    for (let i = 0; i < 100; i++) {
      if (record("demo_bulk", { source: "demo", i })) ok += 1;
    }
    const ms = (performance.now() - t0).toFixed(1);
    recordResult.textContent = "recorded " + ok + "/100 demo_bulk events in " + ms + " ms";
  });

  $("btn-flush").addEventListener("click", async () => {
    if (!revu || typeof revu.flush !== "function") return;
    const button = $("btn-flush");
    button.disabled = true;
    recordResult.textContent = "flushing…";
    const t0 = performance.now();
    try {
      const result = await revu.flush();
      recordResult.textContent = "flush() → " + result + " (" + Math.round(performance.now() - t0) + " ms)";
    } catch (err) {
      recordResult.textContent = "flush() rejected: " + err;
    } finally {
      button.disabled = false;
    }
  });

  // ---- ingest faults -----------------------------------------------------

  const faultsResult = $("faults-result");
  let serverOffline = false;

  async function control(path, body) {
    const response = await fetch(INGEST + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  function describeFaults(faults) {
    const parts = [faults.offline ? "ingest is OFFLINE" : "ingest is online"];
    if (faults.script && faults.script.length) {
      parts.push("next " + faults.script.length + " request(s) scripted: " +
        faults.script.map((s) => s.drop_reply ? "drop" : s.status).join(", "));
    }
    return parts.join(" · ");
  }

  async function runControl(path, body) {
    try {
      const result = await control(path, body);
      if (result && "offline" in result) applyFaults(result);
      faultsResult.textContent = result && "offline" in result ? describeFaults(result) : "done";
      pollServer();
    } catch (err) {
      faultsResult.textContent = "could not reach " + INGEST + ": " + err.message;
    }
  }

  function applyFaults(faults) {
    serverOffline = Boolean(faults.offline);
    $("btn-offline").textContent = serverOffline ? "bring ingest back online" : "toggle ingest offline";
    $("btn-offline").classList.toggle("danger", serverOffline);
  }

  $("btn-offline").addEventListener("click", () => runControl("/__control/faults", { offline: !serverOffline }));
  $("btn-fail-3").addEventListener("click", () =>
    runControl("/__control/faults", { script: [{ status: 503 }, { status: 503 }, { status: 503 }] }));
  $("btn-reset").addEventListener("click", () => runControl("/__control/reset", {}));

  // ---- live SDK status ---------------------------------------------------

  function renderStatus() {
    let status;
    try {
      status = revu && typeof revu.status === "function" ? revu.status() : undefined;
    } catch (err) {
      status = { statusThrew: String(err) };
    }
    const s = status || {};
    fillSummary($("status-summary"), [
      ["ready promise", readyState],
      ["queued", s.queued],
      ["in flight", s.inFlight],
      ["acked", s.acked],
      ["retried", s.retried],
      ["storage", s.storage === undefined ? undefined : s.storage + (s.durable === false ? " (memory only!)" : "")],
      ["online", s.online],
      ["backoff ms", s.backoffMs],
      ["dead-lettered", s.deadLettered],
    ]);
    $("status-json").textContent = status === undefined ? "revu.status() unavailable" : JSON.stringify(status, null, 2);
  }

  // ---- what the server received ------------------------------------------

  let polling = false;

  async function pollServer() {
    if (polling) return;
    polling = true;
    try {
      const response = await fetch(INGEST + "/__control/state?tail=20", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      renderServer(state);
      setBadge($("ingest-badge"), state.faults && state.faults.offline ? "ingest: offline (simulated)" : "ingest: up",
        state.faults && state.faults.offline ? "warn" : "ok");
    } catch (err) {
      setBadge($("ingest-badge"), "ingest: unreachable", "bad");
    } finally {
      polling = false;
    }
  }

  function renderServer(state) {
    if (state.faults) applyFaults(state.faults);
    const last = state.requests && state.requests.length ? state.requests[state.requests.length - 1] : null;
    fillSummary($("server-summary"), [
      ["unique events", state.unique],
      ["duplicates (before dedupe)", state.duplicates],
      ["envelopes stored or deduped", state.received_total],
      ["requests", state.requests_total],
      ["last request", last ? last.outcome + (last.status ? " " + last.status : "") + ", " + last.n + " event(s)" : null],
      ["scripted faults left", state.faults && state.faults.script ? state.faults.script.length : null],
    ]);

    const rows = (state.events || []).slice().reverse().map((ev) => {
      const tr = document.createElement("tr");
      const cells = [clock(ev.received_at_ms), ev.event, ev.event_id, ev.receipts, show(ev.properties, 120)];
      for (const value of cells) {
        const td = document.createElement("td");
        td.textContent = value === undefined || value === null ? "" : String(value);
        tr.append(td);
      }
      if (ev.receipts > 1) tr.className = "dup";
      return tr;
    });
    const tbody = $("server-events");
    if (rows.length) {
      tbody.replaceChildren(...rows);
    } else {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 5;
      td.className = "muted";
      td.textContent = "nothing yet";
      tr.append(td);
      tbody.replaceChildren(tr);
    }
  }

  renderStatus();
  pollServer();
  setInterval(renderStatus, STATUS_EVERY_MS);
  setInterval(pollServer, SERVER_EVERY_MS);
})();
