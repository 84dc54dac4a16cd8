import { test } from "node:test";
import assert from "node:assert/strict";

import { InputError } from "../../js_shim/capture.js";
import { PiiVault } from "../../js_shim/pii.js";
import { durableStore, memoryKeyStore, setup } from "./helpers.mjs";

test("consent gate: a forbidden category is neither stored nor mirrored", () => {
  const { store, queue, record } = setup({ consent: { analytics: true } });
  const ok = record("view", {}, undefined, 1);
  const no = record("ad_click", {}, { category: "marketing" }, 2);
  assert.equal(ok.allowed, true);
  assert.equal(no.allowed, false);
  assert.deepEqual([...store.queued.keys()], [ok.eventId]);
  assert.deepEqual([...queue.queue.keys()], [ok.eventId]);
});

test("narrowing consent purges storage and dead letters at once", () => {
  const { store, queue, record, enqueue } = setup();
  const a = record("view", {}, undefined, 1);
  const m = record("ad", {}, { category: "marketing" }, 2);
  const dead = record("ad2", {}, { category: "marketing" }, 3);
  queue.storeDeadLetters([{ ...JSON.parse(dead.raw), reason: "http_400", status: 400, attempts: 1, at_ms: 4 }]);
  const mutation = enqueue({ url: "https://app.test/x", body: { a: 1 } }, 5);
  assert.equal(queue.setConsent({ analytics: true }), 2);
  assert.deepEqual(new Set(store.queued.keys()), new Set([a.eventId, mutation.eventId]));
  assert.equal(store.dead.size, 0);
  assert.equal(queue.queue.has(m.eventId), false);
});

test("unknown consent holds new events in memory, purges nothing, and stores them once allowed", () => {
  const store = durableStore();
  const first = setup({ store });
  const kept = first.record("view", {}, undefined, 1);
  const { queue, record, beacon } = setup({ store, consent: "unknown" });
  const held = record("click", {}, undefined, 2);
  const mutation = setup({ store, consent: "unknown" }).enqueue({ url: "https://a.test/m" }, 3);
  assert.equal(held.held, true);
  assert.equal(store.queued.has(held.eventId), false, "not stored while consent is unknown");
  assert.ok(store.queued.has(kept.eventId), "nothing stored is purged");
  assert.ok(store.queued.has(mutation.eventId), "necessary items are not held");
  assert.equal(beacon(), null, "nothing is beaconed while consent is unknown");
  assert.equal(queue.setConsent("granted"), 0);
  assert.ok(store.queued.has(held.eventId), "stored once allowed");
  assert.deepEqual(JSON.parse(beacon().body).batch.map((e) => e.event), ["view", "click"]);
});

test("PII is sealed at rest, opened on the next load, and never stored in clear", async () => {
  const store = durableStore();
  const keyStore = memoryKeyStore();
  const c = setup({ store });
  const early = c.record("signup", { email: "alice@example.com", plan: "pro" }, { pii: ["email"] }, 1);
  assert.equal(store.queued.has(early.eventId), false, "no vault yet: memory only");
  await c.queue.setVault(await PiiVault.open({ keyStore }), 1);
  const late = c.record("call", { phone: "+44 20 7946 0137" }, { pii: true }, 2);
  await c.queue.sealsSettled();
  const all = [...store.queued.values()].join("\n");
  for (const secret of ["alice@example.com", "7946 0137"]) assert.equal(all.includes(secret), false, secret);
  assert.ok(all.includes('"plan":"pro"'), "fields not flagged stay readable");
  assert.ok(JSON.parse(store.queued.get(late.eventId)).sealed.ct);
  // The mirror (memory) is clear, so beacons and the core get the real values.
  assert.match(c.beacon().body, /alice@example\.com/);
  // A reload: the next page opens what this one sealed.
  const next = setup({ store });
  assert.equal(next.queue.queue.size, 0);
  await next.queue.setVault(await PiiVault.open({ keyStore }), 3);
  const values = next.queue.snapshot().queued.map((i) => JSON.parse(i.raw));
  assert.deepEqual(values.map((v) => v.env.properties), [{ plan: "pro", email: "alice@example.com" }, { phone: "+44 20 7946 0137" }]);
  assert.ok(values.every((v) => !("sealed" in v)));
});

test("without a vault, PII stays in memory only", async () => {
  const store = durableStore();
  const c = setup({ store });
  await c.queue.setVault(null, 1);
  const r = c.record("signup", { email: "bob@example.com" }, { pii: true }, 1);
  await c.queue.sealsSettled(); // nothing to wait for: no vault, no seal
  assert.equal(c.queue.piiMode, "memory");
  assert.equal(store.queued.has(r.eventId), false);
  assert.ok(c.queue.queue.has(r.eventId));
});

test("a sealed blob that fails authentication is quarantined (unsealable)", async () => {
  const store = durableStore();
  const c = setup({ store });
  await c.queue.setVault(await PiiVault.open({ keyStore: memoryKeyStore() }), 1);
  const r = c.record("x", { email: "e@x.io" }, { pii: true }, 1);
  await c.queue.sealsSettled();
  const next = setup({ store });
  await next.queue.setVault(await PiiVault.open({ keyStore: memoryKeyStore() }), 2); // another key
  assert.deepEqual(next.queue.snapshot().queued, []);
  assert.deepEqual(next.queue.quarantinedBeforeStart, { unsealable: 1 });
  assert.equal(store.queued.has(r.eventId), false);
  assert.equal(JSON.parse(store.quarantined.get(`q:${r.eventId}`)).reason, "unsealable");
});

test("mutations: validation, defaults, relative URLs, not beaconed", () => {
  const c = setup();
  const ok = c.enqueue({ url: "/api/messages", body: { text: "hi" }, stream: "room-1" }, 1, "https://app.test/chat");
  const stored = JSON.parse(ok.raw);
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
    [{}, /url/], [{ url: undefined }, /url/], [{ url: 42 }, /url/], [{ url: "x".repeat(9000) }, /url/],
  ];
  for (const [spec, re] of bad) {
    assert.throws(() => c.enqueue(spec, 1), (e) => e instanceof InputError && e.code === "invalid_mutation" && re.test(e.message), JSON.stringify(spec)?.slice(0, 50));
  }
  c.record("ev", {}, undefined, 2);
  assert.deepEqual(JSON.parse(c.beacon().body).batch.map((e) => e.event), ["ev"]);
});

test("entries lists queued, failed and quarantined items; requeue moves a dead letter back", () => {
  const store = durableStore();
  store.queued.set("junk", "{oops");
  const c = setup({ store });
  const m = c.enqueue({ url: "https://a.test/m", idempotencyKey: "k1" }, 1);
  const e = c.record("ev", {}, undefined, 2);
  c.queue.storeDeadLetters([{ ...JSON.parse(m.raw), reason: "refused:nope", status: 200, attempts: 1, at_ms: 3 }]);
  assert.deepEqual(c.queue.entries().map((x) => [x.kind, x.status]), [["event", "pending"], ["mutation", "failed"], ["quarantined", "quarantined"]]);
  assert.equal(c.queue.entries()[1].idempotencyKey, "k1");
  assert.equal(c.queue.entries()[1].error.reason, "refused:nope");
  assert.deepEqual(c.queue.entries()[2].reason, "not_json");
  c.queue.requeue([JSON.parse(m.raw)]);
  assert.deepEqual([...c.queue.queue.keys()], [m.eventId, e.eventId], "back in seq order");
  assert.equal(store.dead.size, 0);
  assert.ok(store.queued.has(m.eventId));
  assert.equal(c.queue.dropQuarantined("junk"), true);
  assert.equal(store.quarantined.size, 0);
});

test("record options are checked and stored as meta", () => {
  const c = setup();
  const r = c.record("x", {}, { category: "marketing", ttlMs: 5000, pii: ["email"], priority: "low" }, 1);
  assert.deepEqual(JSON.parse(r.raw).meta, { category: "marketing", ttl_ms: 5000, pii: ["email"] });
  assert.equal(JSON.parse(r.raw).env.priority, "low");
  for (const options of [{ ttlMs: 0 }, { ttlMs: 1.5 }, { category: "" }, { pii: [] }, { pii: "email" }]) {
    assert.throws(() => c.record("x", {}, options, 1), (e) => e.code === "invalid_options", JSON.stringify(options));
  }
});
