import { test } from "node:test";
import assert from "node:assert/strict";

import { InputError, encodeJson, wellFormed } from "../../js_shim/json_encode.js";

const LIMITS = { maxDepth: 32, maxMembers: 1000, maxBytes: 32768 };
const enc = (v) => encodeJson(v, "t", LIMITS);
const code = (fn) => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InputError, `not an InputError: ${err}`);
    return err.code;
  }
  return "ok";
};

test("what JSON.stringify writes, for the values it accepts", () => {
  const values = [
    { a: 1, b: "x", c: [1, "2", null, true], d: { e: { f: [] } } },
    { n: -0, big: 1e21, small: 1e-7, f: 0.1 + 0.2, nan: NaN, inf: -Infinity },
    { date: new Date(0), boxed: [new Number(3), new String("s"), new Boolean(false)] },
    { skip: undefined, fn() {}, sym: Symbol("s"), arr: [undefined, () => 1, Symbol("x")] },
    { map: new Map([[1, 2]]), set: new Set([1]), typed: new Uint8Array([1, 2, 3]), re: /x/ },
    JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}'),
    { "quote\"and\\slash\n\u0001": "\u2028\u2029\u007f" },
    { toJSON: () => ({ replaced: true }) },
  ];
  for (const value of values) assert.equal(enc(value), JSON.stringify(value));
  assert.equal({}.polluted, undefined);
});

test("lone surrogates become U+FFFD; pairs stay", () => {
  assert.equal(enc({ s: "a\uD800b", t: "\uDC00", k: "😀" }), '{"s":"a\uFFFDb","t":"\uFFFD","k":"😀"}');
  assert.equal(enc({ "\uD83D": 1 }), '{"\uFFFD":1}');
  assert.equal(wellFormed("x\uD800"), "x\uFFFD");
});

test("hostile values are refused with a code, never thrown as something else", () => {
  const cyclic = {};
  cyclic.me = cyclic;
  const throwsOnEveryTrap = new Proxy({}, new Proxy({}, { get: () => () => { throw new Error("trap"); } }));
  const revocable = Proxy.revocable({}, {});
  revocable.revoke();
  let deep = [];
  for (let i = 0; i < 10000; i++) deep = [deep];
  let deepObject = {};
  for (let i = 0; i < 3000; i++) deepObject = { a: deepObject };
  const cases = [
    [cyclic, "unserialisable"],
    [{ a: [cyclic] }, "unserialisable"],
    [{ n: 10n }, "unserialisable"],
    [{ p: throwsOnEveryTrap }, "unserialisable"],
    [throwsOnEveryTrap, "unserialisable"],
    [{ p: revocable.proxy }, "unserialisable"],
    [{ get g() { throw new Error("getter"); } }, "unserialisable"],
    [{ t: { toJSON() { throw new Error("toJSON"); } } }, "unserialisable"],
    [{ s: "x".repeat(10 * 1024 * 1024) }, "too_large"],
    [{ d: deep }, "too_deep"],
    [deepObject, "too_deep"],
    [{ a: new Array(1e9) }, "too_many_members"],
    [{ t: new Float64Array(1e6) }, "too_many_members"],
    [Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`k${i}`, i])), "too_many_members"],
    [{ s: "é".repeat(20000) }, "too_large"],
  ];
  for (const [value, expected] of cases) assert.equal(code(() => enc(value)), expected);
});

test("the limits are exact", () => {
  let ok = {};
  for (let i = 1; i < 32; i++) ok = { a: ok };
  assert.equal(code(() => enc(ok)), "ok"); // 32 levels
  assert.equal(code(() => enc({ a: ok })), "too_deep"); // 33
  assert.equal(code(() => enc(Array.from({ length: 1000 }, () => 0))), "ok");
  assert.equal(code(() => enc(Array.from({ length: 1001 }, () => 0))), "too_many_members");
  // Strings, keys and numbers count: "s" (3 bytes) and the quoted value.
  assert.equal(code(() => enc({ s: "x".repeat(32768 - 3 - 2) })), "ok");
  assert.equal(code(() => enc({ s: "x".repeat(32768 - 3 - 1) })), "too_large");
});
