import { test } from "node:test";
import assert from "node:assert/strict";

import { InputError, captureEvent, utf8Length } from "../../js_shim/capture.js";
import { RULES, durableStore, setup } from "./helpers.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("record stores the envelope under its event_id before returning", () => {
  const { store, record } = setup();
  const { eventId, raw } = record("signup", { plan: "pro" }, { stream: "s1" }, 1000);
  assert.match(eventId, UUID);
  assert.equal(store.queued.get(eventId), raw, "the core is told exactly what was stored");
  const stored = JSON.parse(raw);
  assert.deepEqual(stored.env, { event_id: eventId, event: "signup", properties: { plan: "pro" }, created_at: 1000, stream: "s1" });
  assert.equal(stored.v, 1);
});

test("seq grows within a millisecond and across reloads", () => {
  const store = durableStore();
  const a = setup({ store });
  const seqOf = (r) => JSON.parse(r.raw).seq;
  const s1 = seqOf(a.record("x", {}, undefined, 5));
  const s2 = seqOf(a.record("x", {}, undefined, 5));
  const s3 = seqOf(a.record("x", {}, undefined, 4)); // the clock went back
  assert.ok(s1 < s2 && s2 < s3);
  const b = setup({ store }); // a reload whose clock is behind
  assert.ok(seqOf(b.record("x", {}, undefined, 1)) > s3);
  assert.deepEqual([...b.queue.queue.values()].map((m) => m.seq).slice(0, 3), [s1, s2, s3]);
});

test("bad input is refused with a code and nothing is stored", () => {
  const { store, queue, record } = setup();
  const cyclic = {};
  cyclic.self = cyclic;
  const cases = [
    [[""], "invalid_event"], [[7], "invalid_event"], [["x".repeat(201)], "invalid_event"], [["x", [1]], "invalid_properties"],
    [["x", "str"], "invalid_properties"], [["x", cyclic], "unserialisable"], [["x", { n: 1n }], "unserialisable"],
    [["x", { s: "y".repeat(RULES.maxEventBytes) }], "too_large"], [["x", {}, { nope: 1 }], "invalid_options"],
    [["x", {}, { priority: "urgent" }], "invalid_options"], [["x", {}, { keys: { a: 1 } }], "invalid_options"],
    [["x", {}, { stream: "" }], "invalid_options"], [["x", {}, { category: "c".repeat(6_000_000) }], "invalid_options"],
    [["x", {}, { stream: "s".repeat(201) }], "invalid_options"],
  ];
  for (const [args, code] of cases) {
    assert.throws(() => record(args[0], args[1], args[2], 1), (err) => err instanceof InputError && err.code === code, code);
  }
  assert.equal(store.queued.size, 0);
  assert.equal(queue.queue.size, 0);
});

test("a throwing store turns the queue memory-only and keeps the event", () => {
  const store = durableStore();
  store.putRecord = () => {
    throw new Error("QuotaExceededError");
  };
  const { queue, failures, record } = setup({ store });
  const { eventId } = record("x", {}, undefined, 1);
  assert.equal(queue.durable, false);
  assert.ok(queue.queue.has(eventId));
  assert.deepEqual(failures.map((f) => f[0]), ["write"]);
  record("y", {}, undefined, 2); // no second attempt at a failing store
  assert.equal(failures.length, 1);
});

test("before the core runs, maxQueue evicts by the core's order and counts", () => {
  const { queue, store, record } = setup({ rules: { ...RULES, maxQueue: 3 } });
  const ids = Array.from({ length: 5 }, (_, i) => record("x", { i }, undefined, i).eventId);
  assert.deepEqual([...queue.queue.keys()], ids.slice(2));
  assert.deepEqual([...store.queued.keys()], ids.slice(2));
  assert.equal(queue.droppedBeforeStart.overflow, 2);
  // Low priority goes first, whatever its age; high priority last.
  const high = record("x", {}, { priority: "high" }, 10).eventId;
  const low = record("x", {}, { priority: "low" }, 11).eventId;
  assert.deepEqual([...queue.queue.keys()], [ids[3], ids[4], high], "the new low-priority event is the one evicted");
  assert.ok(!queue.queue.has(low));
  assert.equal(queue.droppedBeforeStart.overflow, 4);
  queue.selfGoverned = false; // from then on the core decides
  record("x", {}, undefined, 12);
  assert.equal(queue.queue.size, 4);
});

test("mutations are evicted last before the core runs", () => {
  const { queue, record, enqueue } = setup({ rules: { ...RULES, maxQueue: 2 } });
  const m = enqueue({ url: "https://a.test/m" }, 1).eventId;
  record("a", {}, undefined, 2);
  record("b", {}, undefined, 3);
  assert.ok(queue.queue.has(m), "the oldest item, a mutation, survives");
  assert.equal(queue.queue.size, 2);
});

test("terminal batch: wire body, order, exact byte budget, exclusions", () => {
  const { record, beacon } = setup({ rules: { ...RULES, maxBatchBytes: 1000 } });
  const ids = Array.from({ length: 30 }, (_, i) => record("leave", { i, pad: "é".repeat(10) }, undefined, 100 + i).eventId);
  const first = beacon(new Set(), 999);
  assert.ok(utf8Length(first.body) <= 1000, `body is ${utf8Length(first.body)} bytes`);
  assert.ok(first.ids.length > 1 && first.ids.length < 30);
  const body = JSON.parse(first.body);
  assert.deepEqual(Object.keys(body), ["api_key", "batch"]);
  assert.deepEqual(body.batch.map((e) => e.event_id), ids.slice(0, first.ids.length));
  assert.ok(body.batch.every((e) => e.sent_at === 999 && e.event === "leave"));
  const oneMore = utf8Length(first.body) + 1 + utf8Length(JSON.stringify(body.batch[0]));
  assert.ok(oneMore > 1000, "one more event would not have fitted");
  const second = beacon(new Set(first.ids), 1000);
  assert.equal(second.ids[0], ids[first.ids.length]);
  assert.equal(beacon(new Set(ids), 1), null);
});

test("utf8Length matches TextEncoder", () => {
  for (const s of ["", "abc", "é", "€", "😀", "a😀b€é", "\u{10FFFF}", "\uD800", "a\uDC00b"]) {
    assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
  }
});

test("dead letters move out of the queue", () => {
  const { queue, store, record } = setup();
  const { eventId, raw } = record("x", {}, undefined, 1);
  queue.storeDeadLetters([{ ...JSON.parse(raw), reason: "http_400", status: 400, attempts: 1, at_ms: 2 }]);
  assert.equal(queue.queue.has(eventId), false);
  assert.equal(store.queued.has(eventId), false);
  assert.equal(JSON.parse(store.dead.get(eventId)).reason, "http_400");
});

test("what is stored and told to the core is a snapshot the page cannot change", () => {
  const { store, record, beacon } = setup();
  const props = { cart: ["a"] };
  const { eventId, raw } = record("checkout", props, undefined, 1);
  props.cart.push("b");
  props.extra = 1;
  assert.deepEqual(JSON.parse(raw).env.properties, { cart: ["a"] });
  assert.equal(store.queued.get(eventId), raw);
  assert.deepEqual(JSON.parse(beacon(new Set(), 2).body).batch[0].properties, { cart: ["a"] });
});

test("captureEvent is pure: the same call gives the same record", () => {
  const ctx = { eventId: "e1", nowMs: 5, seq: 5000, rules: RULES };
  const a = captureEvent("x", { b: [1, 2.5, null], s: "é\uD800" }, { stream: "s" }, ctx);
  assert.equal(a.raw, captureEvent("x", { b: [1, 2.5, null], s: "é\uD800" }, { stream: "s" }, ctx).raw);
  assert.equal(a.raw, '{"v":1,"seq":5000,"env":{"event_id":"e1","event":"x","properties":{"b":[1,2.5,null],"s":"é\uFFFD"},"created_at":5,"stream":"s"}}');
});
