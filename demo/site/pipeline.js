// revu pipeline demo: one screen, every event a chip moving through the pipeline.
// Uses only revu's public API (revu.record, revu.flush, revu.on, revu.status(),
// revu.outbox.entries()) and the ingest server's JSON endpoints (GET
// /__control/state, POST /__control/faults, POST /__control/reset).
// Plain browser JavaScript, no framework, nothing fetched from elsewhere.
"use strict";

(function () {
  const DEFAULT_INGEST = "http://127.0.0.1:8787";
  const INGEST = (new URLSearchParams(location.search).get("ingest") || DEFAULT_INGEST).replace(/\/+$/, "");
  const TICK_MS = 250; // status / entries sampling and chart resolution
  const SERVER_EVERY_MS = 500; // GET /__control/state
  const CHART_WINDOW_MS = 40_000;
  const ACKED_SHOWN = 60; // chips kept in the acknowledged column; older ones are counted
  const RECORDED_HOLD_MS = 350; // how long a chip rests in "recorded" before it is checked in storage
  const GONE_AFTER_MS = 3_000; // a chip whose item left the queue without an ack is removed after this
  const BURST = 20;
  const LABELS_KEY = "revu-demo:labels"; // sessionStorage: event id -> chip number (survives "kill the tab")

  const $ = (id) => document.getElementById(id);
  const revu = window.revu;
  const COLUMNS = ["recorded", "stored", "inflight", "backoff", "acked", "dead"];

  // What the page shows, readable by tests and the screenshot script.
  const view = { ready: false, role: null, chips: {}, server: null, status: null };
  window.__pipeline = view;

  function fatal(message) {
    $("fatal").textContent = message;
    $("fatal").hidden = false;
  }
  function badge(el, text, kind) {
    el.textContent = text;
    el.className = "badge " + kind;
  }
  function say(text) {
    $("said").textContent = text;
  }

  $("ingest-url").textContent = INGEST.replace(/^https?:\/\//, "");
  $("full-link").href = "index.html" + location.search;

  if (!revu || typeof revu.init !== "function") {
    fatal("revu.js did not load from /revu/revu.js. Build the SDK (./dev build) and serve dist/ at /revu/ " +
      "(python demo/run_demo.py does both).");
    return;
  }
  try {
    // A short flush interval so that the chips visibly rest in "stored" and then move.
    revu.init({ apiKey: "demo-key", host: INGEST, flushIntervalMs: 1000, backoffBaseMs: 1000, backoffMaxMs: 8000 });
  } catch (err) {
    fatal("revu.init threw: " + err);
  }

  // ---- chip labels (#1, #2 ...), kept per browser tab session ---------------

  let labels = {};
  try {
    labels = JSON.parse(sessionStorage.getItem(LABELS_KEY) || "{}") || {};
  } catch (err) {
    labels = {};
  }
  let nextLabel = Object.values(labels).reduce((m, n) => Math.max(m, n), 0) + 1;
  function saveLabels() {
    try {
      const keep = Object.entries(labels).slice(-500); // bounded: old acked ids are not needed
      labels = Object.fromEntries(keep);
      sessionStorage.setItem(LABELS_KEY, JSON.stringify(labels));
    } catch (err) {
      /* sessionStorage full or disabled: labels restart, nothing else changes */
    }
  }

  // ---- chips ------------------------------------------------------------------

  /** id -> { el, state, since, mine } */
  const chips = new Map();
  let ackedTotal = 0;
  let ackedDropped = 0; // acked chips removed from view (older than ACKED_SHOWN)

  function makeChip(id, state, name) {
    const el = document.createElement("span");
    el.className = "chip";
    const n = labels[id];
    el.textContent = n ? String(n) : "·";
    el.title = (name || "event") + " " + id + (n ? "" : " (recorded in another tab or an earlier visit)");
    if (!n) el.classList.add("foreign");
    if (name === "poison") el.classList.add("poison");
    const chip = { el, state, since: Date.now() };
    chips.set(id, chip);
    el.dataset.state = state;
    $("col-" + state).append(el);
    el.animate([{ transform: "scale(0.2)", opacity: 0 }, { transform: "scale(1)", opacity: 1 }],
      { duration: 250, easing: "ease-out" });
    return chip;
  }

  /** Move a chip to another column, animated from where it was (FLIP). */
  function move(id, state) {
    const chip = chips.get(id);
    if (!chip) return;
    if (chip.state === state) return;
    if (chip.state === "acked") return; // acknowledged is final
    const first = chip.el.getBoundingClientRect();
    chip.state = state;
    chip.since = Date.now();
    chip.el.dataset.state = state;
    $("col-" + state).append(chip.el);
    const last = chip.el.getBoundingClientRect();
    const dx = first.left - last.left;
    const dy = first.top - last.top;
    if (first.width && (dx || dy)) {
      chip.el.animate([{ transform: `translate(${dx}px, ${dy}px)` }, { transform: "none" }],
        { duration: 550, easing: "cubic-bezier(.2,.7,.2,1)" });
    }
    if (state === "acked") {
      ackedTotal++;
      trimAcked();
    }
  }

  function ensure(id, state, name) {
    if (chips.has(id)) move(id, state);
    else makeChip(id, state, name);
  }

  function remove(id) {
    const chip = chips.get(id);
    if (!chip) return;
    chip.el.remove();
    chips.delete(id);
  }

  function trimAcked() {
    const column = $("col-acked");
    while (column.children.length > ACKED_SHOWN) {
      const el = column.firstElementChild;
      for (const [id, chip] of chips) {
        if (chip.el === el) {
          chips.delete(id);
          break;
        }
      }
      el.remove();
      ackedDropped++;
    }
  }

  function counts() {
    const out = Object.fromEntries(COLUMNS.map((c) => [c, 0]));
    for (const chip of chips.values()) out[chip.state]++;
    out.acked = ackedTotal;
    return out;
  }

  function renderCounts() {
    const c = counts();
    for (const name of COLUMNS) $("n-" + name).textContent = String(c[name]);
    $("acked-older").textContent = ackedDropped ? `+ ${ackedDropped} earlier` : "";
    view.chips = c;
  }

  // ---- what revu tells us -------------------------------------------------------

  function idsOf(detail) {
    return detail && Array.isArray(detail.eventIds) ? detail.eventIds : [];
  }
  revu.on("outbox:sent", (d) => {
    if (d && d.kind === "mutation") return;
    for (const id of idsOf(d)) ensure(id, "inflight");
    renderCounts();
  });
  revu.on("outbox:acked", (d) => {
    for (const id of idsOf(d)) ensure(id, "acked");
    renderCounts();
  });
  revu.on("outbox:retry", (d) => {
    if (d && d.kind === "mutation") return;
    for (const id of idsOf(d)) ensure(id, "backoff");
    const why = d && d.status ? "HTTP " + d.status : (d && d.reason) || "network error";
    say(`send failed (${why}): retry #${d.attempt} in ${(d.delayMs / 1000).toFixed(1)} s. The events stay stored.`);
    renderCounts();
  });
  revu.on("outbox:failed", (d) => {
    const id = d && d.envelope && d.envelope.event_id;
    if (!id) return;
    ensure(id, "dead", d.envelope.event);
    say(`dead-lettered: ${d.envelope.event} (${d.error && d.error.reason}). Its batch-mates went through.`);
    renderCounts();
  });
  revu.on("outbox:dropped", (d) => {
    for (const id of idsOf(d)) remove(id);
    renderCounts();
  });

  /** Bring the picture in line with revu.outbox.entries() (items restored after a reload, other tabs). */
  function reconcile() {
    let entries;
    try {
      entries = revu.outbox.entries();
    } catch (err) {
      return;
    }
    const now = Date.now();
    const present = new Set();
    for (const e of entries) {
      if (!e || e.kind === "mutation" || e.kind === "quarantined") continue;
      present.add(e.id);
      const name = e.envelope && e.envelope.event;
      if (e.status === "failed") ensure(e.id, "dead", name);
      else if (!chips.has(e.id)) makeChip(e.id, "stored", name);
      else if (chips.get(e.id).state === "recorded" && now - chips.get(e.id).since >= RECORDED_HOLD_MS) move(e.id, "stored");
    }
    for (const [id, chip] of chips) {
      if (chip.state === "acked" || present.has(id)) continue;
      // Left the queue without an ack we saw (another tab's leader sent it, or dropped): fade out.
      if (now - chip.since > GONE_AFTER_MS && chip.state !== "inflight") remove(id);
    }
  }

  function record(name, props) {
    const id = revu.record(name, props);
    if (!id) return null;
    labels[id] = nextLabel++;
    saveLabels();
    makeChip(id, "recorded", name);
    return id;
  }

  // ---- controls -----------------------------------------------------------------

  let serverOffline = false;

  async function control(path, body) {
    const response = await fetch(INGEST + path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), cache: "no-store",
    });
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error || reply.reason || "HTTP " + response.status);
    return reply;
  }

  function guard(fn) {
    return () => {
      Promise.resolve().then(fn).catch((err) => say("could not reach the ingest server: " + err.message));
    };
  }

  $("btn-record").addEventListener("click", () => {
    record("button_click", { n: nextLabel });
    renderCounts();
    say("recorded: stored in localStorage before record() returned.");
  });
  $("btn-burst").addEventListener("click", () => {
    for (let i = 0; i < BURST; i++) record("scroll", { i });
    renderCounts();
    say(`recorded ${BURST}: a full batch (flushAt 20) goes out at once.`);
  });
  $("btn-offline").addEventListener("click", guard(async () => {
    // keep_alive false: every dropped request reaches the page as a failure
    // (Chromium silently resends once on a reused connection).
    const faults = await control("/__control/faults", { offline: !serverOffline, keep_alive: false });
    showFaults(faults);
    say(faults.offline
      ? "ingest offline: it closes every event request without a reply. Keep recording: nothing is lost."
      : "ingest back online: the next retry delivers what waited (or press flush now).");
  }));
  $("btn-fail").addEventListener("click", guard(async () => {
    const n = Math.max(1, Math.min(20, Math.floor(Number($("fail-n").value)) || 1));
    const faults = await control("/__control/faults", { script: Array.from({ length: n }, () => ({ status: 503 })) });
    showFaults(faults);
    say(`the next ${n} event request${n > 1 ? "s" : ""} get 503: revu backs off and retries.`);
  }));
  $("btn-poison").addEventListener("click", guard(async () => {
    await control("/__control/faults", { poison_events: ["poison"] });
    record("poison", {});
    record("button_click", { beside: "poison" });
    renderCounts();
    say("a poison event: the server refuses its batch (422); revu splits the batch until the one bad event is dead-lettered.");
  }));
  $("btn-flush").addEventListener("click", () => {
    say("revu.flush(): sending now, backoff or not…");
    Promise.resolve(revu.flush()).then((ok) => {
      say(ok ? "revu.flush() resolved true: everything queued is acknowledged."
        : "revu.flush() resolved false: not all delivered yet; the rest stays stored and is retried.");
    });
  });
  $("btn-kill").addEventListener("click", () => {
    // A page cannot crash its own renderer; the closest it can do is leave at once,
    // mid-send, with no chance to finish anything. What was recorded was already in
    // localStorage when record() returned, so the page that comes back finds it.
    sessionStorage.setItem("revu-demo:killed", String(Date.now()));
    location.replace(location.href);
  });
  $("btn-tab").addEventListener("click", () => {
    window.open(location.href, "_blank");
    say("a second tab: the tabs elect one leader that sends for both; the other follows.");
  });
  $("btn-reset").addEventListener("click", guard(async () => {
    await control("/__control/reset", {});
    serverOffline = false;
    say("server reset: received events, counters and faults cleared.");
  }));

  try {
    const killedAt = Number(sessionStorage.getItem("revu-demo:killed"));
    if (killedAt) {
      sessionStorage.removeItem("revu-demo:killed");
      const waiting = revu.outbox.entries().filter((e) => e.status === "pending" && e.kind !== "mutation").length;
      $("restored").textContent = `The tab was killed and came back: ${waiting} event${waiting === 1 ? "" : "s"} ` +
        "found waiting in localStorage, picked up where they were.";
      $("restored").hidden = false;
      setTimeout(() => { $("restored").hidden = true; }, 8000);
    }
  } catch (err) {
    /* no sessionStorage: no notice */
  }

  // ---- the server's view --------------------------------------------------------

  function showFaults(faults) {
    serverOffline = !!faults.offline;
    $("btn-offline").textContent = serverOffline ? "bring ingest online" : "take ingest offline";
    $("btn-offline").classList.toggle("on", serverOffline);
    const parts = [];
    if (faults.offline) parts.push("OFFLINE: dropping every event request");
    if (faults.script && faults.script.length) parts.push(`next ${faults.script.length} request(s) will fail`);
    if (faults.poison_events && faults.poison_events.length) parts.push("refuses batches holding \"poison\"");
    $("srv-faults").textContent = parts.length ? parts.join(" · ") : "healthy";
    $("srv-faults").className = "faults" + (parts.length ? " bad" : "");
  }

  function batchLine(r) {
    const li = document.createElement("li");
    const ok = r.outcome === "ok";
    li.className = ok ? "ok" : r.outcome === "pending" ? "pending" : "bad";
    const what = r.outcome === "offline" ? "dropped (offline)" : r.outcome === "ok" ? "200 stored"
      : r.outcome === "pending" ? "answering…" : (r.status ? r.status + " " : "") + r.outcome;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = "#" + r.seq;
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = r.n + (r.n === 1 ? " event" : " events");
    const out = document.createElement("span");
    out.className = "out";
    out.textContent = what;
    li.append(seq, n, out);
    return li;
  }

  let serverSig = "";
  async function pollServer() {
    try {
      const response = await fetch(INGEST + "/__control/state?tail=6", { cache: "no-store" });
      const state = await response.json();
      view.server = { unique: state.unique, duplicates: state.duplicates, received_total: state.received_total,
        requests_total: state.requests_total };
      $("srv-unique").textContent = String(state.unique);
      $("srv-duplicates").textContent = String(state.duplicates);
      $("srv-requests").textContent = String(state.requests_total);
      showFaults(state.faults || {});
      badge($("ingest-badge"), state.faults && state.faults.offline ? "ingest: offline (simulated)" : "ingest: up",
        state.faults && state.faults.offline ? "bad" : "ok");
      const events = (state.requests || []).filter((r) => r.kind === "events").slice(-6).reverse();
      const sig = JSON.stringify(events.map((r) => [r.seq, r.outcome, r.n]));
      if (sig !== serverSig) {
        serverSig = sig;
        $("srv-batches").replaceChildren(...events.map(batchLine));
        if (!events.length) {
          const li = document.createElement("li");
          li.className = "none";
          li.textContent = "no requests yet";
          $("srv-batches").append(li);
        }
      }
    } catch (err) {
      badge($("ingest-badge"), "ingest: unreachable", "bad");
    }
  }

  // ---- revu.status() and the chart ---------------------------------------------

  const samples = []; // { t, queued, inFlight, offline }

  function sdkLine(s) {
    if (!s) return "revu.status(): …";
    const bits = [`state ${s.state || "starting"}`, `queued ${s.queued ?? 0}`];
    if (s.inFlight !== undefined) bits.push(`in flight ${s.inFlight}`);
    if (s.acked !== undefined) bits.push(`acked ${s.acked}`);
    if (s.retried !== undefined) bits.push(`retried ${s.retried}`);
    if (s.deadLettered) bits.push(`dead ${s.deadLettered}`);
    bits.push(s.storage ? `${s.storage}${s.durable ? "" : " (memory only)"}` : "no storage");
    return "revu.status(): " + bits.join(" · ");
  }

  function tick() {
    reconcile();
    let s = null;
    try {
      s = revu.status();
    } catch (err) {
      s = null;
    }
    view.status = s;
    if (s) {
      view.role = s.role || null;
      badge($("role-badge"), "tab: " + (s.role || "…"), s.role === "leader" ? "ok" : "wait");
      $("sdk-line").textContent = sdkLine(s);
      const sub = $("backoff-sub");
      if (s.state === "backing_off" && s.retryAtMs) {
        sub.textContent = `retry #${(s.failures || 0) + 1} in ${Math.max(0, (s.retryAtMs - Date.now()) / 1000).toFixed(1)} s; still stored`;
        sub.classList.add("live");
      } else {
        sub.textContent = "send failed; still stored, retried later";
        sub.classList.remove("live");
      }
      samples.push({ t: Date.now(), queued: s.queued || 0, inFlight: s.inFlight || 0, offline: serverOffline });
      while (samples.length && samples[0].t < Date.now() - CHART_WINDOW_MS - 1000) samples.shift();
    }
    renderCounts();
    drawChart();
  }

  const canvas = $("chart");
  function drawChart() {
    const ratio = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 860;
    const cssH = canvas.clientHeight || 130;
    if (canvas.width !== Math.round(cssW * ratio) || canvas.height !== Math.round(cssH * ratio)) {
      canvas.width = Math.round(cssW * ratio);
      canvas.height = Math.round(cssH * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cssW, cssH);
    const left = 34, right = cssW - 8, top = 8, bottom = cssH - 20;
    const now = Date.now();
    const max = Math.max(5, ...samples.map((p) => p.queued));
    const niceMax = max <= 5 ? 5 : max <= 10 ? 10 : Math.ceil(max / 10) * 10;
    const x = (t) => left + (right - left) * (1 - (now - t) / CHART_WINDOW_MS);
    const y = (v) => bottom - (bottom - top) * (v / niceMax);

    // offline bands
    g.fillStyle = "rgba(220, 38, 38, 0.10)";
    let bandStart = null;
    for (const p of samples) {
      if (p.offline && bandStart === null) bandStart = p.t;
      if (!p.offline && bandStart !== null) {
        g.fillRect(Math.max(left, x(bandStart)), top, x(p.t) - Math.max(left, x(bandStart)), bottom - top);
        bandStart = null;
      }
    }
    if (bandStart !== null) g.fillRect(Math.max(left, x(bandStart)), top, right - Math.max(left, x(bandStart)), bottom - top);

    // grid and labels
    g.strokeStyle = "#e5e7eb";
    g.fillStyle = "#6b7280";
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const v of [0, niceMax / 2, niceMax]) {
      g.beginPath();
      g.moveTo(left, Math.round(y(v)) + 0.5);
      g.lineTo(right, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillText(String(v), left - 6, y(v));
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let i = 4; i >= 0; i--) {
      const s = (CHART_WINDOW_MS / 1000) * (i / 4);
      g.textAlign = i === 4 ? "left" : i === 0 ? "right" : "center";
      g.fillText(s ? `-${s} s` : "now", x(now - s * 1000), bottom + 5);
    }

    const series = (key, stroke, fill) => {
      const pts = samples.filter((p) => p.t >= now - CHART_WINDOW_MS);
      if (!pts.length) return;
      g.beginPath();
      pts.forEach((p, i) => {
        const px = x(p.t), py = y(p[key]);
        if (i === 0) g.moveTo(px, py);
        else {
          g.lineTo(px, y(pts[i - 1][key])); // steps: a count changes at an instant
          g.lineTo(px, py);
        }
      });
      g.lineTo(right, y(pts[pts.length - 1][key]));
      if (fill) {
        g.lineTo(right, bottom);
        g.lineTo(x(pts[0].t), bottom);
        g.closePath();
        g.fillStyle = fill;
        g.fill();
      } else {
        g.strokeStyle = stroke;
        g.lineWidth = 2;
        g.stroke();
      }
    };
    series("queued", null, "rgba(217, 119, 6, 0.18)");
    series("queued", "#d97706");
    series("inFlight", "#2563eb");
  }

  // ---- start ----------------------------------------------------------------------

  if (revu.ready && typeof revu.ready.then === "function") {
    const t0 = performance.now();
    revu.ready.then(
      () => {
        view.ready = true;
        badge($("core-badge"), `core: ready (${Math.round(performance.now() - t0)} ms)`, "ok");
      },
      (err) => {
        badge($("core-badge"), "core: failed", "bad");
        fatal("revu.ready rejected: " + err);
      },
    );
  }
  setInterval(tick, TICK_MS);
  setInterval(pollServer, SERVER_EVERY_MS);
  tick();
  pollServer();
})();
