import { test } from "node:test";
import assert from "node:assert/strict";

import { Capture, InputError } from "../../js_shim/capture.js";
import { PiiVault } from "../../js_shim/pii.js";
import { MemoryStore } from "../../js_shim/storage/memory.js";
import RULES from "../../js_shim/bootstrap_rules.json" with { type: "json" };

function durableStore() {
  const store = new MemoryStore();
  store.durable = true;
  return store;
}

function make(store = durableStore(), consent = "granted") {
  const c = new Capture({ store, rules: RULES, apiKey: "k", consent, onStorageFailure: (op, e) => { throw e; } });
  c.load();
  return c;
}

/** A key store in memory, standing in for IndexedDB under Node. */
function memoryKeyStore() {
  const keys = new Map();
  return {
    getKey: async (id) => keys.get(id) ?? null,
    putKey: async (id, key) => {
      if (!keys.has(id)) keys.set(id, key);
      return keys.get(id);
    },
    deleteKey: async (id) => keys.delete(id),
  };
}


test("consent gate: a forbidden category is neither stored nor mirrored", () => {
  const store = durableStore();
  const c = make(store, { analytics: true });
  const ok = c.record("view", {}, undefined, 1);
  const no = c.record("ad_click", {}, { category: "marketing" }, 2);
  assert.equal(ok.allowed, true);
  assert.equal(no.allowed, false);
  assert.deepEqual([...store.queued.keys()], [ok.eventId]);
  assert.deepEqual([...c.queue.keys()], [ok.eventId]);
  assert.equal(c.droppedBeforeStart.consent, 1);
});

test("narrowing consent purges storage and dead letters at once", () => {
  const store = durableStore();
  const c = make(store);
  const a = c.record("view", {}, undefined, 1);
  const m = c.record("ad", {}, { category: "marketing" }, 2);
  const dead = c.record("ad2", {}, { category: "marketing" }, 3);
  c.storeDeadLetters([{ ...JSON.parse(dead.record), reason: "http_400", status: 400, attempts: 1, at_ms: 4 }]);
  const mutation = c.recordMutation({ url: "https://app.test/x", body: { a: 1 } }, 5, "https://app.test/");
  assert.equal(c.setConsent({ analytics: true }), 2);
  assert.deepEqual(new Set(store.queued.keys()), new Set([a.eventId, mutation.eventId]));
  assert.equal(store.dead.size, 0);
  assert.equal(c.queue.has(m.eventId), false);
});

test("PII is sealed at rest, opened on the next load, and never stored in clear", async () => {
  const store = durableStore();
  const keyStore = memoryKeyStore();
  const c = make(store);
  const early = c.record("signup", { email: "alice@example.com", plan: "pro" }, { pii: ["email"] }, 1);
  assert.equal(store.queued.has(early.eventId), false, "no vault yet: memory only");
  await c.setVault(await PiiVault.open({ keyStore }));
  const late = c.record("call", { phone: "+44 20 7946 0137" }, { pii: true }, 2);
  await c.sealsSettled();
  const all = [...store.queued.values()].join("\n");
  for (const secret of ["alice@example.com", "7946 0137"]) assert.equal(all.includes(secret), false, secret);
  assert.ok(all.includes('"plan":"pro"'), "fields not flagged stay readable");
  assert.ok(JSON.parse(store.queued.get(late.eventId)).sealed.ct);
  // The mirror (memory) is clear, so beacons and the core get the real values.
  assert.match(c.terminalBatch(new Set(), 9).body, /alice@example\.com/);
  // A reload: the next page opens what this one sealed.
  const next = make(store);
  assert.equal(next.queue.size, 0);
  await next.setVault(await PiiVault.open({ keyStore }));
  const values = next.snapshot().queued.map((i) => JSON.parse(i.raw));
  assert.deepEqual(values.map((v) => v.env.properties), [{ plan: "pro", email: "alice@example.com" }, { phone: "+44 20 7946 0137" }]);
  assert.ok(values.every((v) => !("sealed" in v)));
});

test("without a vault, PII stays in memory only", async () => {
  const store = durableStore();
  const c = make(store);
  await c.setVault(null);
  const r = c.record("signup", { email: "bob@example.com" }, { pii: true }, 1);
  await c.sealsSettled(); // nothing to wait for: no vault, no seal
  assert.equal(c.piiMode, "memory");
  assert.equal(store.queued.has(r.eventId), false);
  assert.ok(c.queue.has(r.eventId));
});

test("a sealed blob that fails authentication goes to the core as unreadable", async () => {
  const store = durableStore();
  const c = make(store);
  await c.setVault(await PiiVault.open({ keyStore: memoryKeyStore() }));
  const r = c.record("x", { email: "e@x.io" }, { pii: true }, 1);
  await c.sealsSettled();
  const next = make(store);
  await next.setVault(await PiiVault.open({ keyStore: memoryKeyStore() })); // another key
  const snap = next.snapshot();
  assert.deepEqual(snap.queued.map((i) => i.id), [r.eventId]);
  assert.ok(JSON.parse(snap.queued[0].raw).sealed, "handed over still sealed: the core counts it as corrupt");
});

test("mutations: validation, defaults, relative URLs, not beaconed", () => {
  const c = make();
  const ok = c.recordMutation({ url: "/api/messages", body: { text: "hi" }, stream: "room-1" }, 1, "https://app.test/chat");
  const stored = JSON.parse(ok.record);
  assert.deepEqual(stored.mutation, ok.mutation);
  assert.deepEqual(ok.mutation, {
    method: "POST", url: "https://app.test/api/messages", body: { text: "hi" }, headers: {},
    idempotency_key: ok.mutation.idempotency_key,
  });
  assert.match(ok.mutation.idempotency_key, /^[0-9a-f-]{36}$/);
  assert.equal(stored.env.stream, "room-1");
  assert.equal(ok.stream, "room-1");
  const bad = [
    [{ url: "ftp://x" }, /http/], [{ url: "/x", method: "GET" }, /method/], [{ url: "/x", headers: { a: 1 } }, /headers/],
    [{ url: "/x", idempotencyKey: "" }, /idempotencyKey/], [{ url: "/x", bogus: 1 }, /unknown field/], [null, /object/],
  ];
  for (const [spec, re] of bad) {
    assert.throws(() => c.recordMutation(spec, 1, "https://app.test/"), (e) => e instanceof InputError && re.test(e.message));
  }
  c.record("ev", {}, undefined, 2);
  const beacon = JSON.parse(c.terminalBatch(new Set(), 3).body);
  assert.deepEqual(beacon.batch.map((e) => e.event), ["ev"]);
});

test("entries lists queued and failed items; requeue moves a dead letter back", () => {
  const store = durableStore();
  const c = make(store);
  const m = c.recordMutation({ url: "https://a.test/m", idempotencyKey: "k1" }, 1, undefined);
  const e = c.record("ev", {}, undefined, 2);
  c.storeDeadLetters([{ ...JSON.parse(m.record), reason: "refused:nope", status: 200, attempts: 1, at_ms: 3 }]);
  assert.deepEqual(c.entries().map((x) => [x.kind, x.status]), [["event", "pending"], ["mutation", "failed"]]);
  assert.equal(c.entries()[1].idempotencyKey, "k1");
  assert.equal(c.entries()[1].error.reason, "refused:nope");
  c.requeue([JSON.parse(m.record)]);
  assert.deepEqual([...c.queue.keys()], [m.eventId, e.eventId], "back in seq order");
  assert.equal(store.dead.size, 0);
  assert.ok(store.queued.has(m.eventId));
});

test("record options are checked and stored as meta", () => {
  const c = make();
  const r = c.record("x", {}, { category: "marketing", ttlMs: 5000, pii: ["email"], priority: "low" }, 1);
  assert.deepEqual(JSON.parse(r.record).meta, { category: "marketing", ttl_ms: 5000, pii: ["email"] });
  assert.equal(JSON.parse(r.record).env.priority, "low");
  for (const options of [{ ttlMs: 0 }, { ttlMs: 1.5 }, { category: "" }, { pii: [] }, { pii: "email" }]) {
    assert.throws(() => c.record("x", {}, options, 1), (e) => e.code === "invalid_options", JSON.stringify(options));
  }
});
