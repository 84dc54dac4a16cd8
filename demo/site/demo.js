// revu demo page: drives the SDK and shows what the ingest server received.
// Plain browser JavaScript, no framework, no external assets.
"use strict";

(function () {
  const DEFAULT_INGEST = "http://127.0.0.1:8787";
  const INGEST = (new URLSearchParams(location.search).get("ingest") || DEFAULT_INGEST).replace(/\/+$/, "");
  const STORAGE_PREFIX = "revu"; // revu.init's storageKey (the default)
  const STATUS_EVERY_MS = 500;
  const SERVER_EVERY_MS = 1000;
  const SERVER_TAIL = 50; // events, messages and requests kept by GET /__control/state?tail=
  const EVENTS_SHOWN = 20;
  const ENTRIES_SHOWN = 12;
  const STORED_SHOWN = 12;
  const LOG_MAX = 200;

  const $ = (id) => document.getElementById(id);
  let currentPii; // status().pii, refreshed with the status

  $("page-origin").textContent = location.origin;
  $("ingest-url").textContent = INGEST;
  $("pipeline-link").href = "pipeline.html" + location.search;

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

  /** An element with a class and text (or child nodes). */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** Replace a container's children only when what it shows changed (keeps buttons clickable). */
  const rendered = new WeakMap();
  function renderOnce(container, signature, build) {
    if (rendered.get(container) === signature) return;
    rendered.set(container, signature);
    container.replaceChildren(...build());
  }

  function shortId(id) {
    return typeof id === "string" && id.length > 13 ? id.slice(0, 8) + "…" : String(id);
  }

  // ---- the SDK -----------------------------------------------------------

  const revu = window.revu;
  const hasRevu = Boolean(revu && typeof revu.init === "function");
  const outbox = hasRevu && revu.outbox && typeof revu.outbox === "object" ? revu.outbox : null;
  if (!hasRevu) {
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

  /** Call a revu function; a throw (never expected) is logged and `fallback` returned. */
  function sdk(name, fn, fallback) {
    if (!hasRevu) return fallback;
    try {
      return fn();
    } catch (err) {
      log("error", "revu." + name + " threw: " + err);
      return fallback;
    }
  }

  function currentStatus() {
    if (!hasRevu || typeof revu.status !== "function") return undefined;
    try {
      return revu.status();
    } catch (err) {
      return { statusThrew: String(err) };
    }
  }

  let readyState = "loading";
  if (hasRevu && revu.ready && typeof revu.ready.then === "function") {
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

  if (hasRevu && typeof revu.on === "function") {
    for (const name of ["outbox:update", "outbox:flushed", "outbox:failed", "error"]) {
      try {
        revu.on(name, (detail) => log(name, detail));
      } catch (err) {
        log("error", "revu.on(" + name + ") threw: " + err);
      }
    }
  }

  /** What an outbox item is, in a few words: the event name or the mutation's method and path. */
  function describeItem(envelope, mutation) {
    if (mutation && typeof mutation === "object") {
      let path = String(mutation.url || "");
      try {
        path = new URL(path).pathname;
      } catch (err) {
        // keep the raw url
      }
      const text = mutation.body && typeof mutation.body === "object" && typeof mutation.body.text === "string"
        ? " " + show(mutation.body.text, 40) : "";
      return (mutation.method || "POST") + " " + path + text;
    }
    return envelope && envelope.event ? String(envelope.event) : "?";
  }

  /** describeItem as nodes: a mutation's path may break after each "/", its text goes on its own line. */
  function itemNodes(envelope, mutation) {
    const text = describeItem(envelope, mutation);
    if (!mutation) return [text];
    const match = /^(\S+ \S+)(?: (.*))?$/.exec(text);
    const head = match ? match[1] : text;
    const nodes = [];
    head.split("/").forEach((part, i) => {
      if (i) nodes.push("/", document.createElement("wbr"));
      nodes.push(part);
    });
    if (match && match[2]) nodes.push(el("div", "muted", match[2]));
    return nodes;
  }

  function describeError(error) {
    if (!error || typeof error !== "object") return "";
    const reason = error.reason || "failed";
    const parts = [reason];
    if (error.status !== undefined && error.status !== null && !String(reason).includes(String(error.status))) {
      parts.push("HTTP " + error.status);
    }
    if (error.attempts) parts.push(error.attempts + " attempt" + (error.attempts === 1 ? "" : "s"));
    return parts.join(", ");
  }

  // Rollback hooks: where an app undoes its optimistic UI. Here they only log.
  if (outbox && typeof outbox.onRollback === "function") {
    sdk("outbox.onRollback", () => outbox.onRollback((failure) => {
      const f = failure || {};
      log("rollback", (f.kind || "item") + " " + describeItem(f.envelope, f.mutation) +
        " failed for good (" + describeError(f.error) + "): undo what the page showed for it");
      renderEntries();
    }));
  }

  // ---- record and flush --------------------------------------------------

  const recordResult = $("record-result");
  let recordedCount = 0;

  function record(name, properties, options) {
    return sdk("record", () => revu.record(name, properties, options), null);
  }

  function flush(resultEl, label) {
    if (!hasRevu || typeof revu.flush !== "function") return Promise.resolve(false);
    const t0 = performance.now();
    resultEl.textContent = (label ? label + " · " : "") + "flushing…";
    return Promise.resolve(sdk("flush", () => revu.flush(), false)).then(
      (result) => {
        resultEl.textContent = (label ? label + " · " : "") + "flush() → " + result +
          " (" + Math.round(performance.now() - t0) + " ms)";
        return result;
      },
      (err) => {
        resultEl.textContent = "flush() rejected: " + err;
        return false;
      },
    );
  }

  $("record-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("event-name").value.trim();
    const options = { priority: $("event-priority").value };
    const stream = $("event-stream").value.trim();
    if (stream) options.stream = stream;
    recordedCount += 1;
    const id = record(name, { source: "demo", n: recordedCount, at: new Date().toISOString() }, options);
    recordResult.textContent = id
      ? "recorded " + name + " " + show(options) + " → " + id
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
    const button = $("btn-flush");
    button.disabled = true;
    try {
      await flush(recordResult);
    } finally {
      button.disabled = false;
    }
  });

  // ---- ingest faults -----------------------------------------------------

  const faultsResult = $("faults-result");
  let serverOffline = false;
  let chatOffline = false;

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
    if (faults.poison_events && faults.poison_events.length) parts.push("poison: " + faults.poison_events.join(", "));
    if (faults.mutation_offline) parts.push("chat backend OFFLINE");
    return parts.join(" · ");
  }

  /**
   * POST a control endpoint and show the outcome in `resultEl` (described by
   * `describe` when the reply is the fault config); resolves with the reply or null.
   */
  async function runControl(path, body, resultEl, describe) {
    const out = resultEl || faultsResult;
    try {
      const result = await control(path, body);
      const isFaults = Boolean(result && "offline" in result);
      if (isFaults) applyFaults(result);
      out.textContent = isFaults ? (describe || describeFaults)(result) : "done";
      pollServer();
      return result;
    } catch (err) {
      out.textContent = "could not reach " + INGEST + ": " + err.message;
      return null;
    }
  }

  function applyFaults(faults) {
    serverOffline = Boolean(faults.offline);
    $("btn-offline").textContent = serverOffline ? "bring ingest back online" : "toggle ingest offline";
    $("btn-offline").classList.toggle("danger", serverOffline);
    chatOffline = Boolean(faults.mutation_offline);
    const chatButton = $("btn-chat-offline");
    chatButton.textContent = chatOffline ? "bring chat backend back" : "chat backend offline";
    chatButton.classList.toggle("danger", chatOffline);
    chatButton.classList.toggle("secondary", !chatOffline);
    const poisoned = Array.isArray(faults.poison_events) && faults.poison_events.length > 0;
    $("btn-unpoison").disabled = !poisoned;
    $("btn-unpoison").title = poisoned ? "poison_events: " + faults.poison_events.join(", ") : "no poison rule set";
  }

  $("btn-offline").addEventListener("click", () => runControl("/__control/faults", { offline: !serverOffline }));
  $("btn-fail-3").addEventListener("click", () =>
    runControl("/__control/faults", { script: [{ status: 503 }, { status: 503 }, { status: 503 }] }));
  $("btn-reset").addEventListener("click", () => runControl("/__control/reset", {}));

  // ---- consent -----------------------------------------------------------

  const consentResult = $("consent-result");
  const CONSENT_CHOICES = [
    ["btn-consent-granted", "granted"],
    ["btn-consent-analytics", { analytics: true, marketing: false }],
    ["btn-consent-denied", "denied"],
  ];

  /** The same rule as the SDK: "granted" allows all, an object only its true categories. */
  function allows(state, category) {
    if (category === "necessary" || state === "granted") return true;
    return Boolean(state && typeof state === "object" && state[category] === true);
  }

  function formatConsent(state) {
    if (state === undefined || state === null) return undefined;
    if (typeof state === "string") return state;
    if (typeof state !== "object") return show(state);
    const keys = Object.keys(state);
    return keys.length ? keys.map((k) => k + ": " + (state[k] ? "yes" : "no")).join(", ") : "{} (everything denied)";
  }

  for (const [id, state] of CONSENT_CHOICES) {
    $(id).addEventListener("click", () => {
      const ok = sdk("consent", () => revu.consent(state), false);
      consentResult.textContent = "revu.consent(" + show(state) + ") → " + ok;
      renderStatus();
    });
  }

  $("btn-record-marketing").addEventListener("click", () => {
    const id = record("ad_click", { campaign: "spring_sale", source: "demo" }, { category: "marketing" });
    consentResult.textContent = id
      ? "recorded ad_click (marketing) → " + id
      : "record(\"ad_click\", …, {category: \"marketing\"}) → null: not stored, not sent (dropped.consent)";
  });

  function renderConsent(s) {
    const state = s.consent;
    for (const [id, choice] of CONSENT_CHOICES) {
      const on = state !== undefined && show(state) === show(choice);
      $(id).setAttribute("aria-pressed", String(on));
    }
    const known = state !== undefined && state !== null;
    fillSummary($("consent-summary"), [
      ["status().consent", known ? show(state) : undefined],
      ["allows", known ? ["analytics", "marketing"].map((c) => c + " " + (allows(state, c) ? "✓" : "✗")).join("  ") : undefined],
      ["dropped.consent", s.dropped ? (s.dropped.consent || 0) : "— (until revu.ready)"],
    ]);
  }

  // ---- PII at rest -------------------------------------------------------

  const PII_MODES = {
    encrypted: "encrypted (AES-GCM, key in IndexedDB)",
    memory: "memory (no vault here: PII events are never stored)",
    pending: "pending (the vault is opening)",
  };

  $("pii-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const email = $("pii-email").value.trim();
    const id = record("signup", { email, plan: "pro" }, { pii: ["email"] });
    $("pii-result").textContent = id
      ? "recorded signup (email sealed) → " + id
      : "record(\"signup\", …, {pii: [\"email\"]}) returned null (see the log)";
    setTimeout(renderStorage, 50); // sealing is asynchronous: the sealed record lands a moment later
  });

  /** A stored value made readable: long strings cut inside, then the whole cut. */
  function compactStored(raw) {
    let value;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      return raw.length > 220 ? raw.slice(0, 220) + "…" : raw;
    }
    const cut = (v) => {
      if (typeof v === "string") return v.length > 24 ? v.slice(0, 16) + "…" : v;
      if (Array.isArray(v)) return v.map(cut);
      if (v && typeof v === "object") {
        const out = {};
        for (const [k, inner] of Object.entries(v)) out[k] = cut(inner);
        return out;
      }
      return v;
    };
    return show(cut(value), 320);
  }

  function storedRevuItems() {
    const items = [];
    let ls;
    try {
      ls = window.localStorage;
      if (!ls) return null;
      const queued = STORAGE_PREFIX + ":q:";
      const dead = STORAGE_PREFIX + ":d:";
      for (let i = 0; i < ls.length; i++) {
        const key = ls.key(i);
        if (!key || !(key.startsWith(queued) || key.startsWith(dead))) continue;
        const raw = ls.getItem(key) || "";
        let seq = 0;
        try {
          seq = Number(JSON.parse(raw).seq) || 0;
        } catch (err) {
          // unreadable: listed last
        }
        items.push({ key, raw, seq, dead: key.startsWith(dead), sealed: raw.includes('"sealed":') });
      }
    } catch (err) {
      return null;
    }
    return items.sort((a, b) => Number(a.dead) - Number(b.dead) || b.seq - a.seq);
  }

  function renderStorage() {
    const items = storedRevuItems();
    const list = $("storage-list");
    const email = $("pii-email").value.trim();
    if (items === null) {
      renderOnce(list, "unavailable", () => [el("li", "muted", "localStorage is not available on this page")]);
      return;
    }
    const inClear = email ? items.filter((it) => it.raw.includes(email)).length : 0;
    const sealed = items.filter((it) => it.sealed).length;
    const dead = items.filter((it) => it.dead).length;
    fillSummary($("pii-summary"), [
      ["status().pii", PII_MODES[currentPii] || currentPii],
      ["stored records", items.length ? (items.length - dead) + " queued, " + dead + " dead letter(s), " + sealed + " sealed" : "none"],
      ["email in clear", email ? (inClear ? inClear + " record(s)!" : "in no stored record") : undefined],
    ]);
    const shown = items.slice(0, STORED_SHOWN);
    const signature = show(shown.map((it) => [it.key, it.raw])) + "|" + items.length + "|" + email;
    renderOnce(list, signature, () => {
      if (!items.length) return [el("li", "muted", "nothing stored: every event was acknowledged")];
      const rows = shown.map((it) => {
        const key = el("code", "key", it.key.slice(0, STORAGE_PREFIX.length + 3) + shortId(it.key.slice(STORAGE_PREFIX.length + 3)));
        const tags = [];
        if (it.dead) tags.push(el("span", "tag tag-bad", "dead letter"));
        if (it.sealed) tags.push(el("span", "tag tag-ok", "sealed"));
        if (email && it.raw.includes(email)) tags.push(el("span", "tag tag-bad", "email in clear"));
        return el("li", it.sealed ? "sealed" : "", el("div", "storage-head", key, ...tags), el("code", "value", compactStored(it.raw)));
      });
      if (items.length > shown.length) rows.push(el("li", "muted", "… and " + (items.length - shown.length) + " more"));
      return rows;
    });
  }

  // ---- chat via the mutation outbox --------------------------------------

  const chatResult = $("chat-result");
  let lastServerState = null;

  function chatRoom() {
    return $("chat-room").value.trim() || "lobby";
  }

  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!outbox) {
      chatResult.textContent = "revu.outbox is not available";
      return;
    }
    const room = chatRoom();
    const text = $("chat-text").value.trim();
    if (!text) return;
    const entry = sdk("outbox.enqueue", () => outbox.enqueue({
      url: INGEST + "/v1/chat/" + encodeURIComponent(room) + "/messages",
      body: { text },
      stream: room,
    }), null);
    if (entry) {
      chatResult.textContent = "queued " + show(text, 40) + " → key " + entry.idempotencyKey + " (" + entry.status + ")";
      $("chat-text").value = "";
    } else {
      chatResult.textContent = "revu.outbox.enqueue returned null (see the log)";
    }
    renderChat();
    renderEntries();
  });

  $("chat-room").addEventListener("input", () => renderChat());

  $("btn-chat-offline").addEventListener("click", () =>
    runControl("/__control/faults", { mutation_offline: !chatOffline }, chatResult, (f) => f.mutation_offline
      ? "chat backend is OFFLINE: messages wait in the outbox, retried with backoff"
      : "chat backend is back: the outbox delivers at its next retry"));

  function outboxEntries() {
    if (!outbox || typeof outbox.entries !== "function") return [];
    const entries = sdk("outbox.entries", () => outbox.entries(), []);
    return Array.isArray(entries) ? entries : [];
  }

  function renderChat() {
    const room = chatRoom();
    const state = lastServerState || {};
    const applied = (Array.isArray(state.messages) ? state.messages : []).filter((m) => m && m.room === room);
    const waiting = outboxEntries().filter((e) => e && e.kind === "mutation" && e.stream === room);
    const streams = (currentStatus() || {}).streams;
    const lane = streams && streams[room];
    fillSummary($("chat-summary"), [
      ["backend", lastServerState ? (chatOffline ? "OFFLINE (connections closed)" : "online") : undefined],
      ["applied in " + room, lastServerState ? applied.length : undefined],
      ["mutation_replays", state.mutation_replays],
      ["stream lane", lane ? lane.state + (lane.failures ? ", " + lane.failures + " failure(s)" : "") : "idle"],
    ]);
    const signature = show([room, applied.map((m) => [m.message_id, m.seq_in_room, m.text]),
      waiting.map((e) => [e.id, e.status, e.error && e.error.reason])]);
    renderOnce($("chat-messages"), signature, () => {
      const rows = applied.map((m) => el("li", "", el("span", "seq", "#" + m.seq_in_room),
        el("span", "text", m.text), el("time", "muted", m.at_ms ? clock(m.at_ms) : "")));
      for (const e of waiting) {
        const body = e.mutation && e.mutation.body;
        const text = body && typeof body === "object" && typeof body.text === "string" ? body.text : show(body, 60);
        const note = e.status === "failed" ? "failed: " + describeError(e.error) : "sending…";
        rows.push(el("li", "waiting" + (e.status === "failed" ? " failed" : ""), el("span", "seq", "…"),
          el("span", "text", text), el("span", "muted", note)));
      }
      return rows.length ? rows : [el("li", "muted", "no messages in " + room + " yet")];
    });
  }

  // ---- outbox entries, dead letters, poison ------------------------------

  const outboxResult = $("outbox-result");
  const retrying = new Set();

  $("btn-poison").addEventListener("click", async () => {
    const button = $("btn-poison");
    button.disabled = true;
    try {
      const faults = await runControl("/__control/faults", { poison_events: ["poison"] }, outboxResult,
        () => "poison rule set");
      if (!faults) return;
      let ok = 0;
      for (let i = 1; i <= 9; i++) if (record("demo_batch", { source: "demo", i })) ok += 1;
      const poison = record("poison", { source: "demo", i: 10 });
      renderEntries();
      const label = "recorded " + ok + " demo_batch + " + (poison ? "1" : "0") + " poison";
      const result = await flush(outboxResult, label);
      if (!result) outboxResult.textContent += ": the poison event is dead-lettered, the others go through";
    } finally {
      button.disabled = false;
      renderEntries();
    }
  });

  $("btn-unpoison").addEventListener("click", () =>
    runControl("/__control/faults", { poison_events: [] }, outboxResult,
      () => "poison rule cleared: a retried poison event is now accepted"));

  $("outbox-entries").addEventListener("click", (ev) => {
    const button = ev.target instanceof Element ? ev.target.closest("button[data-action]") : null;
    if (!button || !outbox) return;
    const id = button.dataset.id;
    if (button.dataset.action === "drop") {
      const ok = sdk("outbox.drop", () => outbox.drop(id), false);
      outboxResult.textContent = "revu.outbox.drop(" + shortId(id) + ") → " + ok;
      setTimeout(renderEntries, 50);
      return;
    }
    retrying.add(id);
    renderEntries();
    outboxResult.textContent = "revu.outbox.retry(" + shortId(id) + ")…";
    Promise.resolve(sdk("outbox.retry", () => outbox.retry(id), false)).then(
      (ok) => {
        outboxResult.textContent = "revu.outbox.retry(" + shortId(id) + ") → " + ok +
          (ok ? " (acknowledged)" : " (failed for good again)");
      },
      (err) => {
        outboxResult.textContent = "revu.outbox.retry rejected: " + err;
      },
    ).finally(() => {
      retrying.delete(id);
      renderEntries();
    });
  });

  function renderEntries() {
    const entries = outboxEntries().filter((e) => e && typeof e === "object");
    const failed = entries.filter((e) => e.status === "failed");
    const pending = entries.filter((e) => e.status !== "failed");
    const shown = failed.concat(pending).slice(0, Math.max(ENTRIES_SHOWN, failed.length));
    const signature = show(shown.map((e) => [e.id, e.status, e.error, retrying.has(e.id)])) + "|" + entries.length;
    renderOnce($("outbox-entries"), signature, () => {
      if (!entries.length) {
        const td = el("td", "muted", "outbox is empty");
        td.colSpan = 5;
        return [el("tr", "", td)];
      }
      const rows = shown.map((e) => {
        const error = el("td", "", describeError(e.error));
        if (e.status === "failed") {
          const actions = el("div", "actions");
          error.append(actions);
          const busy = retrying.has(e.id);
          const retry = el("button", "small", busy ? "retrying…" : "retry");
          Object.assign(retry.dataset, { action: "retry", id: e.id });
          retry.type = "button";
          retry.disabled = busy;
          const drop = el("button", "small secondary", "drop");
          Object.assign(drop.dataset, { action: "drop", id: e.id });
          drop.type = "button";
          drop.disabled = busy;
          actions.append(retry, drop);
        }
        const item = describeItem(e.envelope, e.mutation);
        const cells = [
          el("td", "", e.kind || ""),
          el("td", "", el("span", "tag " + (e.status === "failed" ? "tag-bad" : "tag-wait"), e.status || "?")),
          el("td", "", e.stream || ""),
          el("td", "", ...itemNodes(e.envelope, e.mutation)),
          error,
        ];
        cells[3].title = item + (e.id ? " · " + e.id : "");
        return el("tr", e.status === "failed" ? "failed" : "", ...cells);
      });
      if (entries.length > shown.length) {
        const td = el("td", "muted", "… and " + (entries.length - shown.length) + " more pending");
        td.colSpan = 5;
        rows.push(el("tr", "", td));
      }
      return rows;
    });
  }

  // ---- live SDK status ---------------------------------------------------

  function describeDropped(dropped) {
    if (!dropped || typeof dropped !== "object") return undefined;
    const parts = Object.entries(dropped).filter(([, n]) => n).map(([k, n]) => k + " " + n);
    return parts.length ? parts.join(", ") : "none";
  }

  function renderStatus() {
    const status = currentStatus();
    const s = status || {};
    currentPii = s.pii;
    const streams = s.streams && typeof s.streams === "object" ? Object.keys(s.streams) : null;
    fillSummary($("status-summary"), [
      ["ready promise", readyState],
      ["queued", s.queued],
      ["in flight", s.inFlight],
      ["acked", s.acked],
      ["retried", s.retried],
      ["storage", s.storage === undefined || s.storage === null ? undefined : s.storage + (s.durable === false ? " (memory only!)" : "")],
      ["online", s.online],
      ["backoff ms", s.backoffMs],
      ["dead-lettered", s.deadLettered],
      ["dropped", describeDropped(s.dropped)],
      ["consent", formatConsent(s.consent)],
      ["pii", s.pii],
      ["mutation streams", streams ? (streams.length ? streams.join(", ") : "none") : undefined],
    ]);
    $("status-json").textContent = status === undefined ? "revu.status() unavailable" : JSON.stringify(status, null, 2);
    renderConsent(s);
    renderStorage();
    renderEntries();
    renderChat();
  }

  // ---- what the server received ------------------------------------------

  let polling = false;

  async function pollServer() {
    if (polling) return;
    polling = true;
    try {
      const response = await fetch(INGEST + "/__control/state?tail=" + SERVER_TAIL, { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      lastServerState = state && typeof state === "object" ? state : null;
      renderServer(state || {});
      renderChat();
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
    const describeLast = (r) => r.kind === "mutation"
      ? "mutation " + r.outcome + (r.status ? " " + r.status : "") + (r.room ? ", room " + r.room : "")
      : r.outcome + (r.status ? " " + r.status : "") + ", " + r.n + " event(s)";
    fillSummary($("server-summary"), [
      ["unique events", state.unique],
      ["duplicates (before dedupe)", state.duplicates],
      ["envelopes stored or deduped", state.received_total],
      ["requests", state.requests_total],
      ["last request", last ? describeLast(last) : null],
      ["scripted faults left", state.faults && state.faults.script ? state.faults.script.length : null],
      ["poison events", state.faults && state.faults.poison_events
        ? (state.faults.poison_events.length ? state.faults.poison_events.join(", ") : "none") : null],
    ]);

    const rows = (state.events || []).slice(-EVENTS_SHOWN).reverse().map((ev) => {
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
