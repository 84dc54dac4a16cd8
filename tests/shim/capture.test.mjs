import { test } from "node:test";
import assert from "node:assert/strict";

import { Capture, InputError, utf8Length } from "../../js_shim/capture.js";
import { MemoryStore } from "../../js_shim/storage/memory.js";
import RULES from "../../js_shim/bootstrap_rules.json" with { type: "json" };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A MemoryStore standing in for a durable one (localStorage). */
function durableStore() {
  const store = new MemoryStore();
  store.durable = true;
  return store;
}

function capture(store = durableStore(), rules = RULES) {
  const failures = [];
  const c = new Capture({ store, rules, apiKey: "k", onStorageFailure: (op, err) => failures.push([op, String(err)]) });
  c.load();
  return { c, store, failures };
}

test("record stores the envelope under its event_id before returning", () => {
  const { c, store } = capture();
  const { eventId, record, durable } = c.record("signup", { plan: "pro" }, { stream: "s1" }, 1000);
  assert.match(eventId, UUID);
  assert.equal(durable, true);
  assert.equal(store.queued.get(eventId), record, "the core is told exactly what was stored");
  const stored = JSON.parse(record);
  assert.deepEqual(stored.env, { event_id: eventId, event: "signup", properties: { plan: "pro" }, created_at: 1000, stream: "s1" });
  assert.equal(stored.v, 1);
});

test("seq grows within a millisecond and across reloads", () => {
  const store = durableStore();
  const a = capture(store).c;
  const seqOf = (r) => JSON.parse(r.record).seq;
  const s1 = seqOf(a.record("x", {}, undefined, 5));
  const s2 = seqOf(a.record("x", {}, undefined, 5));
  const s3 = seqOf(a.record("x", {}, undefined, 4)); // the clock went back
  assert.ok(s1 < s2 && s2 < s3);
  const b = capture(store).c; // a reload whose clock is behind
  assert.ok(seqOf(b.record("x", {}, undefined, 1)) > s3);
  assert.deepEqual([...b.queue.values()].map((m) => m.seq).slice(0, 3), [s1, s2, s3]);
});

test("bad input is refused with a code and nothing is stored", () => {
  const { c, store } = capture();
  const cyclic = {};
  cyclic.self = cyclic;
  const cases = [
    [[""], "invalid_event"], [[7], "invalid_event"], [["x", [1]], "invalid_properties"],
    [["x", "str"], "invalid_properties"], [["x", cyclic], "unserialisable"], [["x", { n: 1n }], "unserialisable"],
    [["x", { s: "y".repeat(RULES.maxEventBytes) }], "too_large"], [["x", {}, { nope: 1 }], "invalid_options"],
    [["x", {}, { priority: "urgent" }], "invalid_options"], [["x", {}, { keys: { a: 1 } }], "invalid_options"],
    [["x", {}, { stream: "" }], "invalid_options"],
  ];
  for (const [args, code] of cases) {
    assert.throws(() => c.record(args[0], args[1], args[2], 1), (err) => err instanceof InputError && err.code === code, code);
  }
  assert.equal(store.queued.size, 0);
  assert.equal(c.queue.size, 0);
});

test("a throwing store turns capture memory-only and keeps the event", () => {
  const store = durableStore();
  store.durable = true;
  store.putRecord = () => {
    throw new Error("QuotaExceededError");
  };
  const { c, failures } = capture(store);
  const { eventId, durable } = c.record("x", {}, undefined, 1);
  assert.equal(durable, false);
  assert.equal(c.durable, false);
  assert.ok(c.queue.has(eventId));
  assert.deepEqual(failures.map((f) => f[0]), ["write"]);
  c.record("y", {}, undefined, 2); // no second attempt at a failing store
  assert.equal(failures.length, 1);
});

test("before the core runs, the published maxQueue evicts the oldest and counts", () => {
  const { c, store } = capture(durableStore(), { ...RULES, maxQueue: 3 });
  const ids = Array.from({ length: 5 }, (_, i) => c.record("x", { i }, undefined, i).eventId);
  assert.deepEqual([...c.queue.keys()], ids.slice(2));
  assert.deepEqual([...store.queued.keys()], ids.slice(2));
  assert.equal(c.droppedBeforeStart.overflow, 2);
  c.coreLive = true; // from then on the core decides
  c.record("x", {}, undefined, 9);
  assert.equal(c.queue.size, 4);
});

test("load hands unreadable values to the core and mirrors the rest in seq order", () => {
  const store = durableStore();
  store.queued.set("b", JSON.stringify({ v: 1, seq: 20, env: { event_id: "b", event: "x", properties: {}, created_at: 1 } }));
  store.queued.set("junk", "{oops");
  store.queued.set("a", JSON.stringify({ v: 1, seq: 10, env: { event_id: "a", event: "x", properties: {}, created_at: 1 } }));
  const { c } = capture(store);
  assert.deepEqual([...c.queue.keys()], ["a", "b"]);
  const snap = c.snapshot();
  assert.deepEqual(snap.queued.map((i) => i.id), ["junk", "a", "b"]);
  assert.deepEqual(JSON.parse(snap.queued[1].raw), JSON.parse(store.queued.get("a")));
});

test("terminal batch: wire body, order, byte budget, exclusions", () => {
  const { c } = capture(durableStore(), { ...RULES, beaconMaxBytes: 1000 });
  const ids = Array.from({ length: 30 }, (_, i) => c.record("leave", { i, pad: "é".repeat(10) }, undefined, 100 + i).eventId);
  const first = c.terminalBatch(new Set(), 999);
  assert.ok(utf8Length(first.body) <= 1000, `body is ${utf8Length(first.body)} bytes`);
  assert.ok(first.ids.length > 1 && first.ids.length < 30);
  const body = JSON.parse(first.body);
  assert.deepEqual(Object.keys(body), ["api_key", "batch"]);
  assert.deepEqual(body.batch.map((e) => e.event_id), ids.slice(0, first.ids.length));
  assert.ok(body.batch.every((e) => e.sent_at === 999 && e.event === "leave"));
  const second = c.terminalBatch(new Set(first.ids), 1000);
  assert.equal(second.ids[0], ids[first.ids.length]);
  assert.equal(c.terminalBatch(new Set(ids), 1), null);
});

test("utf8Length matches TextEncoder", () => {
  for (const s of ["", "abc", "é", "€", "😀", "a😀b€é", "\u{10FFFF}"]) {
    assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
  }
});

test("dead letters move out of the queue", () => {
  const { c, store } = capture();
  const { eventId, record } = c.record("x", {}, undefined, 1);
  c.storeDeadLetters([{ ...JSON.parse(record), reason: "http_400", status: 400, attempts: 1, at_ms: 2 }]);
  assert.equal(c.queue.has(eventId), false);
  assert.equal(store.queued.has(eventId), false);
  assert.equal(JSON.parse(store.dead.get(eventId)).reason, "http_400");
});

test("what is stored and told to the core is a snapshot the page cannot change", () => {
  const { c, store } = capture();
  const props = { cart: ["a"] };
  const { eventId, record } = c.record("checkout", props, undefined, 1);
  props.cart.push("b");
  props.extra = 1;
  assert.deepEqual(JSON.parse(record).env.properties, { cart: ["a"] });
  assert.equal(store.queued.get(eventId), record);
  assert.deepEqual(JSON.parse(c.terminalBatch(new Set(), 2).body).batch[0].properties, { cart: ["a"] });
});
