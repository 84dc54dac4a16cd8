import { test } from "node:test";
import assert from "node:assert/strict";

import { PiiVault, splitPii, joinPii } from "../../js_shim/pii.js";
import { IndexedDbKeyStore } from "../../js_shim/storage/indexeddb.js";

/** The KeyStore interface of IndexedDbKeyStore, in memory (Node has no IndexedDB). */
class MemoryKeyStore {
  constructor() {
    /** @type {Map<string, CryptoKey>} */
    this.keys = new Map();
  }

  async getKey(id) {
    return this.keys.get(id) ?? null;
  }

  async putKey(id, key) {
    if (!this.keys.has(id)) this.keys.set(id, key);
    return this.keys.get(id);
  }

  async deleteKey(id) {
    this.keys.delete(id);
  }
}

const EVENT_ID = "6f1c1f0e-8a4b-4c7e-9d2a-0b1c2d3e4f50";
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Replace a global for the duration of `fn` (getters included), then restore it. */
async function withGlobal(name, descriptor, fn) {
  const saved = Object.getOwnPropertyDescriptor(globalThis, name);
  Object.defineProperty(globalThis, name, { configurable: true, ...descriptor });
  try {
    return await fn();
  } finally {
    if (saved) Object.defineProperty(globalThis, name, saved);
    else delete globalThis[name];
  }
}

function flipByte(b64, index) {
  const bytes = Buffer.from(b64, "base64");
  bytes[index] ^= 0x01;
  return bytes.toString("base64");
}

// --- PiiVault -------------------------------------------------------------

test("seal then open gives back the value: unicode and nested", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const values = [
    { email: "alice@example.com", name: "Zoë Ångström 山田 🙂", address: { lines: ["1 Rue d'Été", null], zip: "75001" } },
    "just a string",
    42,
    [1, { deep: [true, false, null] }],
    null,
    { empty: {}, list: [] },
  ];
  for (const value of values) {
    const sealed = await vault.seal(value, EVENT_ID);
    assert.deepEqual(Object.keys(sealed).sort(), ["alg", "ct", "iv", "kid"]);
    assert.equal(sealed.alg, "A256GCM");
    assert.equal(sealed.kid, "pii-v1");
    assert.match(sealed.iv, B64);
    assert.match(sealed.ct, B64);
    assert.equal(Buffer.from(sealed.iv, "base64").length, 12);
    // JSON-safe: it survives being stored as text
    assert.deepEqual(await vault.open(JSON.parse(JSON.stringify(sealed)), EVENT_ID), value);
  }
});

test("two seals of the same value differ (fresh IV each time)", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const a = await vault.seal({ email: "alice@example.com" }, EVENT_ID);
  const b = await vault.seal({ email: "alice@example.com" }, EVENT_ID);
  assert.notEqual(a.iv, b.iv);
  assert.notEqual(a.ct, b.ct);
  assert.deepEqual(await vault.open(a, EVENT_ID), await vault.open(b, EVENT_ID));
});

test("a tampered blob is refused with a clear error", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const sealed = await vault.seal({ email: "alice@example.com" }, EVENT_ID);
  const ctLen = Buffer.from(sealed.ct, "base64").length;
  const tampered = [
    { ...sealed, ct: flipByte(sealed.ct, 0) }, // ciphertext
    { ...sealed, ct: flipByte(sealed.ct, ctLen - 1) }, // tag
    { ...sealed, iv: flipByte(sealed.iv, 5) },
    { ...sealed, ct: Buffer.from(sealed.ct, "base64").subarray(0, ctLen - 1).toString("base64") },
  ];
  for (const blob of tampered) {
    await assert.rejects(vault.open(blob, EVENT_ID), /failed authentication: tampered, wrong key or wrong aad/);
  }
  // malformed blobs say what is wrong
  await assert.rejects(vault.open({ ...sealed, alg: "A128GCM" }, EVENT_ID), /not an A256GCM blob/);
  await assert.rejects(vault.open({ ...sealed, iv: "AAAA" }, EVENT_ID), /iv must be 12 bytes/);
  await assert.rejects(vault.open({ ...sealed, ct: "%%%" }, EVENT_ID), /ct is not base64/);
  await assert.rejects(vault.open(null, EVENT_ID), /not an A256GCM blob/);
});

test("a blob opened under another aad (another record) is refused", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const sealed = await vault.seal({ phone: "+1 415 555 0137" }, EVENT_ID);
  await assert.rejects(vault.open(sealed, "another-event-id"), /failed authentication/);
  await assert.rejects(vault.open(sealed, ""), /failed authentication/);
  await assert.rejects(vault.open(sealed), TypeError);
  await assert.rejects(vault.seal("x"), TypeError);
});

test("a blob from another key is refused", async () => {
  const a = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const b = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const sealed = await a.seal("secret", EVENT_ID);
  await assert.rejects(b.open(sealed, EVENT_ID), /failed authentication/);
  const c = await PiiVault.open({ keyStore: new MemoryKeyStore(), keyId: "pii-v2" });
  await assert.rejects(c.open(sealed, EVENT_ID), /sealed with key "pii-v1", this vault holds "pii-v2"/);
});

test("the key is non-extractable, AES-GCM 256, encrypt/decrypt only, and stored as a CryptoKey", async () => {
  const keyStore = new MemoryKeyStore();
  const vault = await PiiVault.open({ keyStore });
  const key = keyStore.keys.get("pii-v1");
  assert.ok(key instanceof CryptoKey);
  assert.equal(vault.key, key);
  assert.equal(key.extractable, false);
  assert.equal(key.type, "secret");
  assert.deepEqual(key.algorithm, { name: "AES-GCM", length: 256 });
  assert.deepEqual([...key.usages].sort(), ["decrypt", "encrypt"]);
  await assert.rejects(crypto.subtle.exportKey("raw", key));
  await assert.rejects(crypto.subtle.exportKey("jwk", key));
});

test("a second open on the same key store reuses the key and opens what the first sealed", async () => {
  const keyStore = new MemoryKeyStore();
  const first = await PiiVault.open({ keyStore });
  const sealed = JSON.stringify(await first.seal({ email: "alice@example.com" }, EVENT_ID));
  const second = await PiiVault.open({ keyStore }); // a reload
  assert.equal(second.key, first.key);
  assert.equal(keyStore.keys.size, 1);
  assert.deepEqual(await second.open(JSON.parse(sealed), EVENT_ID), { email: "alice@example.com" });
});

test("two tabs opening a fresh store at once agree on one key", async () => {
  const keyStore = new MemoryKeyStore();
  // Both read "no key" before either stores one.
  const [a, b] = await Promise.all([PiiVault.open({ keyStore }), PiiVault.open({ keyStore })]);
  assert.equal(a.key, b.key);
  assert.deepEqual(await b.open(await a.seal("x", EVENT_ID), EVENT_ID), "x");
});

test("the sealed blob contains no piece of the clear value", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const value = { email: "alice@example.com", phone: "+1 415 555 0137", note: "call alice after 5" };
  const sealed = await vault.seal(value, EVENT_ID);
  const stored = JSON.stringify(sealed);
  const ctBytes = Buffer.from(sealed.ct, "base64").toString("latin1");
  const clearJson = JSON.stringify(value);
  // Every 5-character piece of the clear JSON (random base64 matching a given
  // one is a ~1e-9 event per position, so this does not flake).
  for (let i = 0; i + 5 <= clearJson.length; i++) {
    const piece = clearJson.slice(i, i + 5);
    assert.ok(!stored.includes(piece), `stored blob contains ${JSON.stringify(piece)}`);
    assert.ok(!ctBytes.includes(piece), `ciphertext bytes contain ${JSON.stringify(piece)}`);
  }
  for (const word of ["alice", "example", "5550137", "555 0137", "4155550137"]) {
    assert.ok(!stored.includes(word), word);
  }
});

test("open refuses a stored key the vault would not have made, and leaves it alone", async () => {
  const gen = (length, extractable, usages) => crypto.subtle.generateKey({ name: "AES-GCM", length }, extractable, usages);
  const wrong = [
    await gen(256, true, ["encrypt", "decrypt"]), // extractable
    await gen(128, false, ["encrypt", "decrypt"]), // short
    await gen(256, false, ["encrypt"]), // cannot decrypt
  ];
  for (const key of wrong) {
    const keyStore = new MemoryKeyStore();
    await keyStore.putKey("pii-v1", key);
    await assert.rejects(PiiVault.open({ keyStore }), /the stored key "pii-v1" is not a non-extractable AES-GCM 256/);
    assert.equal(keyStore.keys.get("pii-v1"), key);
  }
});

test("open throws clearly when crypto.subtle is unavailable (insecure context)", async () => {
  const noSubtle = { getRandomValues: (a) => a };
  await withGlobal("crypto", { value: noSubtle }, () =>
    assert.rejects(PiiVault.open({ keyStore: new MemoryKeyStore() }), /crypto\.subtle is not available \(insecure context/),
  );
  await withGlobal("crypto", { value: undefined }, () =>
    assert.rejects(PiiVault.open({ keyStore: new MemoryKeyStore() }), /crypto is not available/),
  );
});

test("a key store failure reaches the caller", async () => {
  const broken = { getKey: async () => { throw new Error("IndexedDB transaction aborted (QuotaExceededError)"); } };
  await assert.rejects(PiiVault.open({ keyStore: broken }), /QuotaExceededError/);
});

test("seal refuses values with no JSON form", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  await assert.rejects(vault.seal(undefined, EVENT_ID), TypeError);
  await assert.rejects(vault.seal({ n: 1n }, EVENT_ID), TypeError);
});

// --- splitPii / joinPii -----------------------------------------------------

const ENV = Object.freeze({
  event_id: EVENT_ID,
  event: "signup",
  properties: Object.freeze({ plan: "pro", email: "alice@example.com", phone: "+1 415 555 0137", profile: { age: 31 } }),
  created_at: 1000,
  stream: "s1",
});

test("splitPii(true) moves every property to the secret", () => {
  const { clear, secret } = splitPii(ENV, true);
  assert.deepEqual(clear, { ...ENV, properties: {} });
  assert.deepEqual(secret, { properties: ENV.properties });
  assert.deepEqual(joinPii(clear, secret), ENV);
});

test("splitPii(list) moves only the named properties that are present", () => {
  const { clear, secret } = splitPii(ENV, ["email", "phone", "missing"]);
  assert.deepEqual(clear, { ...ENV, properties: { plan: "pro", profile: { age: 31 } } });
  assert.deepEqual(secret, { fields: { email: "alice@example.com", phone: "+1 415 555 0137" } });
  assert.ok(!JSON.stringify(clear).includes("alice"));
  assert.deepEqual(joinPii(clear, secret), ENV);
});

test("splitPii with only missing names or an empty list keeps everything clear", () => {
  for (const pii of [["missing"], []]) {
    const { clear, secret } = splitPii(ENV, pii);
    assert.deepEqual(clear, ENV);
    assert.deepEqual(secret, { fields: {} });
    assert.deepEqual(joinPii(clear, secret), ENV);
  }
});

test("splitPii with no pii flag passes the envelope through", () => {
  for (const pii of [false, null, undefined]) {
    const { clear, secret } = splitPii(ENV, pii);
    assert.deepEqual(clear, ENV);
    assert.notEqual(clear, ENV);
    assert.equal(secret, null);
    assert.deepEqual(joinPii(clear, secret), ENV);
  }
});

test("splitPii on empty properties, a whole-property list, and a __proto__ property", () => {
  const empty = { ...ENV, properties: {} };
  assert.deepEqual(joinPii(...Object.values(splitPii(empty, true))), empty);
  const all = splitPii(ENV, Object.keys(ENV.properties));
  assert.deepEqual(all.clear.properties, {});
  assert.deepEqual(joinPii(all.clear, all.secret), ENV);
  // JSON.parse makes "__proto__" an own property; it must stay one
  const tricky = JSON.parse('{"event":"x","properties":{"__proto__":{"admin":true},"a":1}}');
  const split = splitPii(tricky, ["__proto__"]);
  assert.deepEqual(Object.keys(split.secret.fields), ["__proto__"]);
  assert.deepEqual(Object.keys(split.clear.properties), ["a"]);
  assert.equal(Object.getPrototypeOf(split.secret.fields), Object.prototype);
  const joined = joinPii(split.clear, split.secret);
  assert.deepEqual(Object.keys(joined.properties).sort(), ["__proto__", "a"]);
  assert.equal(Object.getPrototypeOf(joined.properties), Object.prototype);
});

test("splitPii and joinPii refuse what they do not understand", () => {
  assert.throws(() => splitPii(ENV, "email"), TypeError);
  assert.throws(() => splitPii(ENV, [1]), TypeError);
  assert.throws(() => splitPii({ event: "x" }, true), TypeError);
  assert.throws(() => joinPii(ENV, { other: {} }), TypeError);
  assert.throws(() => joinPii(ENV, { fields: "x" }), TypeError);
});

test("split, seal, store as text, open, join gives back the envelope", async () => {
  const vault = await PiiVault.open({ keyStore: new MemoryKeyStore() });
  const { clear, secret } = splitPii(ENV, ["email", "phone"]);
  const stored = JSON.stringify({ env: clear, pii: await vault.seal(secret, ENV.event_id) });
  assert.ok(!stored.includes("alice@example.com") && !stored.includes("555 0137"));
  const back = JSON.parse(stored);
  assert.deepEqual(joinPii(back.env, await vault.open(back.pii, back.env.event_id)), ENV);
});

// --- IndexedDbKeyStore.open failures (Node has no IndexedDB) ---------------

/** A fake `indexedDB` whose open() request is settled by `script(req)`. */
function fakeIndexedDb(script) {
  return {
    open() {
      const req = { result: undefined, error: null };
      queueMicrotask(() => script(req));
      return req;
    },
  };
}

test("IndexedDbKeyStore.open rejects clearly when indexedDB is undefined", async () => {
  assert.equal(globalThis.indexedDB, undefined);
  await assert.rejects(IndexedDbKeyStore.open("revu-vault"), { message: "IndexedDB is not available in this environment" });
});

test("IndexedDbKeyStore.open rejects clearly when reading indexedDB throws", async () => {
  const securityError = Object.assign(new Error("access denied"), { name: "SecurityError" });
  await withGlobal("indexedDB", { get: () => { throw securityError; } }, () =>
    assert.rejects(IndexedDbKeyStore.open("revu-vault"), /IndexedDB is not available \(SecurityError: access denied\)/),
  );
});

test("IndexedDbKeyStore.open rejects clearly when open throws or fails", async () => {
  const throwing = { open: () => { throw Object.assign(new Error("nope"), { name: "InvalidStateError" }); } };
  await withGlobal("indexedDB", { value: throwing }, () =>
    assert.rejects(IndexedDbKeyStore.open("revu-vault"), /IndexedDB refused to open "revu-vault" \(InvalidStateError: nope\)/),
  );
  const failing = fakeIndexedDb((req) => {
    req.error = Object.assign(new Error("A mutation operation was attempted"), { name: "InvalidStateError" });
    req.onerror();
  });
  await withGlobal("indexedDB", { value: failing }, () =>
    assert.rejects(IndexedDbKeyStore.open("revu-vault"), /IndexedDB refused to open "revu-vault" \(InvalidStateError/),
  );
});

test("IndexedDbKeyStore.open times out when the open request never settles, and closes a late success", async () => {
  let pending;
  const hanging = fakeIndexedDb((req) => {
    pending = req;
  });
  await withGlobal("indexedDB", { value: hanging }, async () => {
    const started = Date.now();
    await assert.rejects(IndexedDbKeyStore.open("revu-vault", { timeoutMs: 50 }), /did not open "revu-vault" within 50 ms \(private browsing mode\?\)/);
    assert.ok(Date.now() - started >= 45);
  });
  let closed = false;
  pending.result = { close: () => { closed = true; } };
  pending.onsuccess();
  assert.ok(closed, "a connection that arrives after the timeout is closed");
});
