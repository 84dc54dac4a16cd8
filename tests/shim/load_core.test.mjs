// js_shim/core/load_core.js against fake assets: the orchestration, the inline lock, and
// every failure becoming one clear Error that names the asset and the cause. The real
// Pyodide path is checked by the build (scripts/core_build.mjs verify) and tests/e2e.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { loadPythonCore, CoreLoadError, SNAPSHOT_HEADER_BYTES } from "../../js_shim/core/load_core.js";
import { loadCore } from "../../js_shim/bridge.js";

// The smallest valid WebAssembly module: magic + version.
const WASM = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
const ZIP = new Uint8Array([0x50, 0x4b, 0x03, 0x04, ...new Array(60).fill(0)]);
const STDLIB_SHA = "a".repeat(64);

// A stand-in for Pyodide's loader: drives the options the way pyodide.mjs does
// (stdLibURL awaited, snapshot awaited, createPyodideModule -> instantiateWasm).
const LOADER = `
export async function loadPyodide(cfg) {
  globalThis.__fakeConfigs.push(cfg);
  if (cfg.__fake === "exit") {
    cfg.stderr("Fatal Python error: init_fs_encoding: failed to get the Python codec");
    cfg.stderr("ModuleNotFoundError: No module named 'encodings'");
    throw Object.assign(new Error("Program terminated with exit(1)"), { name: "ExitStatus", status: 1 });
  }
  if (cfg.__fake === "hang") return new Promise(() => {});
  if (cfg.__fake === "bad-build") throw new Error("Snapshot build id mismatch: expected 1, got 2");
  const stdlib = await cfg.stdLibURL;
  const snapshot = cfg._loadSnapshot ? await cfg._loadSnapshot : undefined;
  const module = await cfg.createPyodideModule({});
  module.pyodide.stdlib = stdlib;
  module.pyodide.snapshot = snapshot;
  return module.pyodide;
}
`;
const ASM = `
export default function createPyodideModule(settings) {
  return new Promise((resolve) => {
    const imports = { env: {} };
    settings.instantiateWasm(imports, (instance, module) => {
      const fail = globalThis.__fakeConfigs.at(-1).__fake === "no-revu";
      resolve({ pyodide: {
        imports, instance, module,
        pyimport(name) {
          if (fail) throw new Error("Traceback (most recent call last):\\nModuleNotFoundError: No module named 'revu'");
          return { Bridge: () => ({ start: (s) => "started " + s, handle: (s) => "handled " + s }), destroy() {} };
        },
      } });
    });
  });
}
`;

let dir;
let base;
before(() => {
  globalThis.__fakeConfigs = [];
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "revu-load-core-"));
  fs.mkdirSync(path.join(dir, "assets"));
  fs.writeFileSync(path.join(dir, "assets", "pyodide.0000000000000001.mjs"), LOADER);
  fs.writeFileSync(path.join(dir, "assets", "pyodide.asm.0000000000000002.mjs"), ASM);
  base = pathToFileURL(dir + path.sep).href;
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function manifest(extra = {}) {
  return {
    version: 1,
    pyodide: "314.0.7",
    assets: {
      loader: { path: "assets/pyodide.0000000000000001.mjs" },
      asm: { path: "assets/pyodide.asm.0000000000000002.mjs" },
      wasm: { path: "assets/pyodide.asm.0000000000000003.wasm" },
      stdlib: { path: "assets/python_stdlib.0000000000000004.zip", sha256: STDLIB_SHA },
      ...extra,
    },
    lock: { info: { version: "314.0.7" }, packages: {} },
  };
}

function snapshotBytes(stdlibSha, body = [1, 2, 3, 4]) {
  const out = new Uint8Array(SNAPSHOT_HEADER_BYTES + body.length);
  new TextEncoder().encodeInto(`REVUSNP1${stdlibSha}`, out);
  out.set(body, SNAPSHOT_HEADER_BYTES);
  return out;
}

/**
 * fetch() over a table: path (relative to base) -> {status, type, body} | "hang" | "network".
 * Unlisted files of the base folder are read from disk (the .mjs modules, for diagnoses).
 */
function fakeFetch(table = {}) {
  const files = {
    "assets/pyodide.asm.0000000000000003.wasm": { type: "application/wasm", body: WASM },
    "assets/python_stdlib.0000000000000004.zip": { type: "application/zip", body: ZIP },
    ...table,
  };
  const calls = [];
  const impl = (input, init = {}) => {
    const url = String(input);
    const rel = url.startsWith(base) ? url.slice(base.length) : url;
    calls.push({ rel, signal: init.signal });
    const entry = files[rel];
    if (entry === "hang") {
      return new Promise((_, reject) => init.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))));
    }
    if (entry === "network") return Promise.reject(new TypeError("Failed to fetch"));
    if (entry === undefined) {
      const file = path.join(dir, rel);
      if (!fs.existsSync(file)) return Promise.resolve(new Response("nope", { status: 404, statusText: "Not Found" }));
      return Promise.resolve(new Response(fs.readFileSync(file), { headers: { "Content-Type": "text/javascript" } }));
    }
    return Promise.resolve(new Response(entry.body ?? "", {
      status: entry.status ?? 200, statusText: entry.statusText ?? "", headers: entry.type ? { "Content-Type": entry.type } : {},
    }));
  };
  return { impl, calls };
}

async function rejects(promise, asset, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof CoreLoadError, `not a CoreLoadError: ${err}`);
    assert.equal(err.asset, asset, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test("loads the assets, hands them to Pyodide and returns the revu bridge", async () => {
  const { impl, calls } = fakeFetch();
  const m = manifest();
  const { pyodide, bridge } = await loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl });
  assert.equal(bridge.start("{}"), "started {}");
  assert.equal(bridge.handle("[]"), "handled []");
  const cfg = globalThis.__fakeConfigs.at(-1);
  assert.deepEqual(cfg.lockFileContents, m.lock); // inline lock: no request for it
  assert.equal(cfg.lockFileURL, undefined);
  assert.deepEqual([...pyodide.stdlib], [...ZIP]); // the zip's bytes, not a URL
  assert.ok(pyodide.module instanceof WebAssembly.Module);
  assert.equal(typeof pyodide.imports.env.Jsv_GetError_import, "function");
  assert.equal(pyodide.imports.env.JsvError_Check(pyodide.imports.env.Jsv_GetError_import()), true);
  assert.equal(pyodide.imports.env.JsvError_Check(null), false);
  assert.deepEqual(calls.map((c) => c.rel).sort(), [m.assets.wasm.path, m.assets.stdlib.path].sort());
});

test("a snapshot made with this stdlib is passed to Pyodide without its header", async () => {
  const snap = { path: "assets/revu_core.0000000000000005.snapshot", stdlibSha256: STDLIB_SHA };
  const { impl } = fakeFetch({ [snap.path]: { type: "application/octet-stream", body: snapshotBytes(STDLIB_SHA) } });
  const { pyodide } = await loadPythonCore({ assetsUrl: base, manifest: manifest({ snapshot: snap }), fetchImpl: impl });
  assert.deepEqual([...pyodide.snapshot], [1, 2, 3, 4]);
  // useSnapshot: false never asks for it.
  const second = fakeFetch();
  const { pyodide: p2 } = await loadPythonCore({ assetsUrl: base, manifest: manifest({ snapshot: snap }), fetchImpl: second.impl, useSnapshot: false });
  assert.equal(p2.snapshot, undefined);
  assert.ok(!second.calls.some((c) => c.rel === snap.path));
});

test("a stale snapshot (made with another stdlib zip) is refused", async () => {
  const snap = { path: "assets/revu_core.0000000000000005.snapshot" };
  const { impl } = fakeFetch({ [snap.path]: { type: "application/octet-stream", body: snapshotBytes("b".repeat(64)) } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest({ snapshot: snap }), fetchImpl: impl }),
    "snapshot", /made with another stdlib zip .*stale snapshot is never used/);
  const junk = fakeFetch({ [snap.path]: { type: "application/octet-stream", body: new Uint8Array(300) } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest({ snapshot: snap }), fetchImpl: junk.impl }),
    "snapshot", /is not a revu memory snapshot/);
});

test("a snapshot from another Pyodide build is reported as the snapshot's fault", async () => {
  const snap = { path: "assets/revu_core.0000000000000005.snapshot" };
  const { impl } = fakeFetch({ [snap.path]: { type: "application/octet-stream", body: snapshotBytes(STDLIB_SHA) } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest({ snapshot: snap }), fetchImpl: impl, pyodideOptions: { __fake: "bad-build" } }),
    "snapshot", /\(snapshot\) was refused by Pyodide: Snapshot build id mismatch/);
});

test("an HTTP error names the asset, its URL and the status; the other downloads are aborted", async () => {
  const m = manifest();
  const { impl, calls } = fakeFetch({
    [m.assets.stdlib.path]: { status: 404, statusText: "Not Found" },
    [m.assets.wasm.path]: "hang",
  });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl }),
    "stdlib", /python_stdlib\.0000000000000004\.zip \(stdlib\) answered HTTP 404 Not Found/);
  const wasmCall = calls.find((c) => c.rel === m.assets.wasm.path);
  assert.equal(wasmCall.signal.aborted, true);
});

test("wasm served with the wrong type is refused with the type it got", async () => {
  const m = manifest();
  const { impl } = fakeFetch({ [m.assets.wasm.path]: { type: "application/octet-stream", body: WASM } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl }),
    "wasm", /served as "application\/octet-stream"; WebAssembly needs Content-Type: application\/wasm/);
  const none = fakeFetch({ [m.assets.wasm.path]: { body: WASM } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: none.impl }), "wasm", /served as (no Content-Type|"text\/plain")/);
});

test("bytes that are not WebAssembly fail to compile, with a hint about Content-Encoding", async () => {
  const m = manifest();
  const brotliLike = new Uint8Array([0x1b, 0x2f, 0x00, 0x10, 0x8c, 0x94, 0x20, 0x00]);
  const { impl } = fakeFetch({ [m.assets.wasm.path]: { type: "application/wasm", body: brotliLike } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl }),
    "wasm", /\(wasm\) failed to compile: CompileError.*a compressed file served without Content-Encoding\?/);
});

test("a network error (or CORS refusal) is named as such", async () => {
  const m = manifest();
  const { impl } = fakeFetch({ [m.assets.wasm.path]: "network" });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl }),
    "wasm", /could not be fetched: network error or a cross-origin request without CORS \(TypeError: Failed to fetch\)/);
});

test("a request that never answers times out instead of hanging", async () => {
  const m = manifest();
  const { impl, calls } = fakeFetch({ [m.assets.stdlib.path]: "hang" });
  const t0 = Date.now();
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl, timeoutMs: 150 }),
    "stdlib", /\(stdlib\) timed out after 150 ms/);
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(calls.find((c) => c.rel === m.assets.stdlib.path).signal.aborted, true);
});

test("a Python runtime that never finishes starting times out too", async () => {
  const { impl } = fakeFetch();
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest(), fetchImpl: impl, timeoutMs: 150, pyodideOptions: { __fake: "hang" } }),
    "python", /did not start within 150 ms after its assets arrived/);
});

test("a zip served compressed without Content-Encoding is named", async () => {
  const m = manifest();
  const { impl } = fakeFetch({ [m.assets.stdlib.path]: { type: "application/zip", body: new Uint8Array([0x1f, 0x8b, 8, 0, ...new Array(40).fill(1)]) } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: m, fetchImpl: impl }),
    "stdlib", /is not a zip file \(starts with 1f 8b 08 00\): a compressed copy served without its Content-Encoding header\?/);
});

test("a JavaScript module that is missing or mistyped is diagnosed", async () => {
  const missing = manifest({ loader: { path: "assets/pyodide.00000000000000ff.mjs" } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: missing, fetchImpl: fakeFetch().impl }),
    "loader", /pyodide\.00000000000000ff\.mjs \(loader\) answered HTTP 404/);
  // The module exists but the server says it is HTML.
  const m = manifest();
  fs.writeFileSync(path.join(dir, "assets", "pyodide.asm.00000000000000aa.mjs"), "<!doctype html><p>oops</p>");
  const html = manifest({ asm: { path: "assets/pyodide.asm.00000000000000aa.mjs" } });
  const { impl } = fakeFetch({ [html.assets.asm.path]: { type: "text/html", body: "<!doctype html>" } });
  await rejects(loadPythonCore({ assetsUrl: base, manifest: html, fetchImpl: impl }),
    "asm", /served as "text\/html"; module scripts need text\/javascript/);
  assert.ok(m.assets.asm.path !== html.assets.asm.path);
});

test("a Python start-up failure carries Python's own last words", async () => {
  const { impl } = fakeFetch();
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest(), fetchImpl: impl, pyodideOptions: { __fake: "exit" } }),
    "python", /Python runtime failed to start \(exit status 1\): Fatal Python error.*No module named 'encodings'/);
  await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest(), fetchImpl: impl, pyodideOptions: { __fake: "no-revu" } }),
    "stdlib", /the revu core could not be imported from .*python_stdlib.*: ModuleNotFoundError: No module named 'revu'/);
});

test("the manifest is checked: present, complete, and only paths inside assetsUrl", async () => {
  const { impl } = fakeFetch();
  await rejects(loadPythonCore({ assetsUrl: base, manifest: null, fetchImpl: impl }), "manifest", /no asset manifest/);
  const incomplete = manifest();
  delete incomplete.assets.wasm;
  await rejects(loadPythonCore({ assetsUrl: base, manifest: incomplete, fetchImpl: impl }), "manifest", /no "wasm" entry/);
  for (const bad of ["https://cdn.example.com/x.wasm", "//cdn.example.com/x.wasm", "/abs/x.wasm", "../x.wasm", "assets/../../x.wasm"]) {
    await rejects(loadPythonCore({ assetsUrl: base, manifest: manifest({ wasm: { path: bad } }), fetchImpl: impl }),
      "wasm", /must be relative to assetsUrl/);
  }
  await rejects(loadPythonCore({ assetsUrl: "not a url", manifest: manifest(), fetchImpl: impl }), "manifest", /absolute URL/);
});

test("bridge.js unbundled has no manifest and says so", async () => {
  await assert.rejects(loadCore(base), /no asset manifest \(revu\.js was built without one/);
});
