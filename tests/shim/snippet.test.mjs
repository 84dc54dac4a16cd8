import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

import { adoptStub, createRevu } from "../../js_shim/index.js";

/** Run the snippet's source in a sandbox with a fake document, as a page would. */
function runSnippet() {
  const appended = [];
  const sandbox = {
    crypto: globalThis.crypto,
    Promise,
    Uint8Array,
    document: { createElement: () => ({}), head: { appendChild: (el) => appended.push(el) } },
  };
  sandbox.window = sandbox;
  vm.runInNewContext(readFileSync(new URL("../../js_shim/snippet.js", import.meta.url), "utf8"), sandbox);
  return { stub: sandbox.revu, appended };
}

test("the snippet queues calls, returns ids and promises, and loads revu.js async", () => {
  const { stub, appended } = runSnippet();
  assert.equal(appended.length, 1);
  assert.equal(appended[0].async, true);
  assert.equal(appended[0].src, "/revu/revu.js");
  const id = stub.record("early", { a: 1 });
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.ok(stub.flush() instanceof Promise);
  assert.equal(typeof stub.on("x", () => {}), "function");
  assert.deepEqual([...stub._q.map((c) => c.m)], ["record", "flush", "on"]);
});

test("revu.js replays the stub in order: same ids, settled promises, live unsubscribes", async () => {
  // The bits of a page revu's lifecycle listens to.
  globalThis.window = globalThis;
  globalThis.document = { visibilityState: "visible", readyState: "complete" };
  globalThis.addEventListener ??= () => {};
  globalThis.removeEventListener ??= () => {};
  const { stub } = runSnippet();
  const seen = [];
  const off = stub.on("outbox:update", (d) => seen.push(d));
  stub.init({ apiKey: "k", storage: "memory", tabs: false });
  const id = stub.record("early", { n: 1 });
  const flushed = stub.flush();
  const errors = [];
  stub.on("error", (e) => errors.push(e.code)); // replayed in order: it hears what follows
  stub.record(42); // bad input: replayed, refused, nothing else affected
  const core = { start: async () => JSON.stringify({ ok: false, error: "no core in this test" }), handle: async () => "[]" };
  const real = createRevu({ scriptUrl: "https://cdn.test/revu/revu.js", loadCore: async () => core });
  const revu = adoptStub(stub, real);
  assert.equal(revu, stub, "the page's reference to the stub now has the real methods");
  assert.equal(revu.version, real.version);
  assert.ok(revu.outbox.entries().some((e) => e.id === id), "the early record kept the id the stub returned");
  assert.deepEqual(errors, ["invalid_event"]);
  assert.equal(await flushed, false, "settled like the real flush (the core did not start here)");
  await assert.rejects(revu.ready);
  off();
  assert.equal(typeof revu.record("later", {}), "string");
  assert.equal(seen.length, 0);
});
