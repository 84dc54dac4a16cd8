import { test } from "node:test";
import assert from "node:assert/strict";

import { Driver } from "../../js_shim/driver.js";
import { Emitter } from "../../js_shim/emitter.js";
import { QueueStore } from "../../js_shim/queue_store.js";
import { BOOTSTRAP_RULES as RULES } from "../../js_shim/rules.js";
import { MemoryStore } from "../../js_shim/storage/memory.js";

/** A scripted fake core: records the facts it gets, answers from a queue. */
function fakeCore(answers) {
  const seen = [];
  return {
    seen,
    start: async () => JSON.stringify({ ok: true }),
    handle: async (json) => {
      seen.push(...JSON.parse(json));
      return JSON.stringify(answers.shift() ?? []);
    },
  };
}

function setup({ answers = [], post, skipSend } = {}) {
  const capture = new QueueStore({ store: new MemoryStore(), rules: RULES, onStorageFailure: () => {} });
  capture.load(0);
  const emitter = new Emitter();
  const timers = new Map();
  const statuses = [];
  const logs = [];
  let now = 1000;
  const soonQueue = [];
  const lost = [];
  const driver = new Driver({
    queue: capture,
    onCoreLost: (reason) => lost.push(reason),
    emitter,
    log: (...a) => logs.push(a),
    clock: {
      nowMs: () => now,
      jitter: () => 0.25,
      soon: (fn) => soonQueue.push(fn),
      timers: { set: (key, at, fn) => timers.set(key, { at, fn }), cancel: (key) => timers.delete(key) },
    },
    post: post ?? (async () => ({ ok: true, status: 200, replyText: '{"ok":true}' })),
    onStatus: (s) => statuses.push(s),
    skipSend,
  });
  const core = fakeCore(answers);
  const drain = async () => {
    while (soonQueue.length) {
      soonQueue.shift()();
      await new Promise((r) => setTimeout(r, 0));
    }
  };
  return { capture, emitter, timers, statuses, logs, driver, core, drain, lost, advance: (ms) => (now += ms) };
}

test("facts pushed before start follow Restored, in order", async () => {
  const t = setup();
  t.driver.push({ type: "went_online" });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.deepEqual(t.core.seen.map((f) => f.type), ["restored", "went_online"]);
  assert.equal(t.core.seen[1].now_ms, 1000);
});

test("send runs the transport and reports the outcome as a fact", async () => {
  const calls = [];
  const t = setup({
    answers: [[{ type: "send", batch_id: "b1", url: "u", body: "{}", event_ids: ["a"], keepalive: true, timeout_ms: 5,
                 method: "PUT", headers: { "Idempotency-Key": "k" }, kind: "mutation" }]],
    post: async (req) => {
      calls.push(req);
      return { ok: false, status: 503, retryAfter: "2" };
    },
  });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  await t.drain();
  assert.deepEqual(calls, [{ url: "u", method: "PUT", headers: { "Idempotency-Key": "k" }, body: "{}", keepalive: true, timeoutMs: 5 }]);
  const failed = t.core.seen.find((f) => f.type === "send_failed");
  assert.deepEqual(failed, { now_ms: 1000, type: "send_failed", batch_id: "b1", status: 503, error: "", retry_after: "2", jitter: 0.25 });
});

test("a send that a beacon already carries is not started, and the core is told", async () => {
  const calls = [];
  const send = (id, ids) => ({ type: "send", batch_id: id, url: "u", body: "{}", event_ids: ids, keepalive: true, timeout_ms: 5,
                               method: "POST", headers: {}, kind: "events" });
  const t = setup({
    answers: [[send("b1", ["a", "b"]), send("b2", ["c"])]],
    post: async (req) => { calls.push(req); return { ok: true, status: 200, replyText: "{}" }; },
    skipSend: (cmd) => cmd.event_ids.includes("a"),
  });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  await t.drain();
  assert.equal(calls.length, 1, "only b2 went on the wire");
  assert.deepEqual(t.core.seen.filter((f) => f.type === "send_skipped"), [{ now_ms: 1000, type: "send_skipped", batch_id: "b1" }]);
  assert.deepEqual(t.core.seen.filter((f) => f.type === "send_succeeded").map((f) => f.batch_id), ["b2"]);
});

test("timers, deletes, status, rules and flush settle are carried out", async () => {
  const t = setup({
    answers: [[
      { type: "set_timer", key: "retry", at_ms: 5000 },
      { type: "report_status", status: { queued: 3 } },
      { type: "publish_rules", rules: { ...RULES, maxQueue: 7 } },
      { type: "emit", name: "outbox:update", detail: { size: 3 } },
    ]],
  });
  const updates = [];
  t.emitter.on("outbox:update", (d) => updates.push(d));
  const eventId = "e1";
  t.capture.addToMirror(eventId, { v: 1, seq: 1, env: { event_id: eventId, event: "x", properties: {}, created_at: 1 } });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.equal(t.timers.get("retry").at, 5000);
  assert.deepEqual(t.statuses, [{ queued: 3 }]);
  assert.equal(t.capture.rules.maxQueue, 7);
  assert.deepEqual(updates, [{ size: 3 }]);
  t.timers.get("retry").fn();
  t.core.handle = async () => JSON.stringify([
    { type: "delete", event_ids: [eventId], reason: "acked" },
    { type: "settle_flush", flush_id: "f1", ok: true },
  ]);
  const flushed = t.driver.flush();
  await t.drain();
  assert.equal(await flushed, true);
  assert.equal(t.capture.queue.size, 0);
});

test("an unknown command is reported as an error, and the rest still run", async () => {
  const t = setup({ answers: [[{ type: "launch_rocket" }, { type: "set_timer", key: "flush", at_ms: 1 }]] });
  const errors = [];
  t.emitter.on("error", (e) => errors.push(e));
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /unknown command type "launch_rocket"/);
  assert.ok(t.timers.has("flush"));
});

test("abandon resolves pending flushes false", async () => {
  const t = setup();
  const p = t.driver.flush();
  t.driver.abandon();
  assert.equal(await p, false);
});

test("a throwing listener does not break emit", () => {
  const e = new Emitter();
  const got = [];
  const origError = console.error;
  console.error = () => {};
  e.on("x", () => {
    throw new Error("boom");
  });
  e.on("x", (d) => got.push(d));
  e.emit("x", 1);
  console.error = origError;
  assert.deepEqual(got, [1]);
});

test("a core that throws is lost: flushes settle false, later flushes false at once, capture is told", async () => {
  const t = setup();
  const errors = [];
  t.emitter.on("error", (e) => errors.push(e));
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  t.core.handle = async () => {
    throw new Error("RuntimeError: unreachable (Pyodide fatal)");
  };
  const pending = t.driver.flush();
  t.driver.push({ type: "went_online" });
  await t.drain();
  assert.equal(await pending, false);
  assert.equal(await t.driver.flush(), false);
  assert.deepEqual(errors.map((e) => e.code), ["core_unavailable"]);
  assert.match(t.lost[0], /Pyodide fatal/);
  assert.equal(t.driver.unhandled, 2, "the facts it did not answer are counted, not silently dropped");
  t.driver.push({ type: "went_offline" });
  assert.equal(t.driver.unhandled, 3);
});

test("garbage from the core counts as a lost core", async () => {
  const t = setup();
  t.core.handle = async () => "undefined";
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.equal(t.lost.length, 1);
});

test("halt stops the driver after the commands before it ran", async () => {
  const t = setup({ answers: [[{ type: "set_timer", key: "flush", at_ms: 9 }, { type: "halt", reason: "too many errors" }]] });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.ok(t.timers.has("flush"));
  assert.match(t.lost[0], /too many errors/);
});

test("a fact that cannot be encoded is reported and left out alone", async () => {
  const t = setup();
  const errors = [];
  t.emitter.on("error", (e) => errors.push(e));
  t.driver.push({ type: "went_online", bad: 10n });
  t.driver.push({ type: "went_offline" });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.deepEqual(t.core.seen.map((f) => f.type), ["restored", "went_offline"]);
  assert.deepEqual(errors.map((e) => e.code), ["bad_fact"]);
});

test("quarantine carries out the core's command", async () => {
  const t = setup({ answers: [[{ type: "quarantine", entries: [{ id: "e1", area: "queue", reason: "invalid_record" }] }]] });
  t.capture.addToMirror("e1", { v: 1, seq: 1, env: { event_id: "e1", event: "x", properties: {}, created_at: 1 } });
  await t.driver.start(t.core, { type: "restored", now_ms: 1 });
  assert.equal(t.capture.queue.size, 0);
  assert.equal(t.capture.entries()[0].reason, "invalid_record");
});
