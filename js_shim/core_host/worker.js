// The entry point of the core's dedicated Worker: Pyodide and the Python core
// live here, off the page's main thread. Requests arrive as messages
// `{id, op, payload}` and are answered `{id, ok, result | error}`; facts and
// commands stay JSON strings, exactly as on the main thread before.
//
//   op "load"   {assetsUrl, manifest, timeoutMs, snapshotCache}  load Pyodide + revu
//                            -> {restored, snapshot}: restored is true when it started from
//                            the snapshot cached by an earlier visit; snapshot, when not
//                            null, is the "makeSnapshot" payload for a second Worker
//                            (see "snapshot cache" below)
//   op "makeSnapshot" {assetsUrl, manifest, timeoutMs, key}  (only in the throwaway
//                            snapshot Worker) a clean Pyodide + `import revu`, its memory
//                            snapshot gzipped into Cache Storage under `key` -> bytes stored
//   op "start"  optionsJson  Bridge.start                 -> JSON string
//   op "handle" factsJson    Bridge.handle                -> JSON string, or the
//                            parsed commands when a `send` asked for gzip: its
//                            body is compressed here (CompressionStream, off
//                            the page's main thread) and travels as
//                            `body_bytes` (an ArrayBuffer, transferred).

import { CoreLoadError, loadPythonCore, wrapSnapshot } from "../core/load_core.js";

// ---------------------------------------------------------------------------- snapshot cache
// A returning visitor starts from a memory snapshot this browser made after its first
// start, instead of starting Python (docs/serving.md, "Start-up cost"). A snapshot
// must be taken at a clean point, before any page state exists in the interpreter
// (Pyodide's makeMemorySnapshot needs `_makeSnapshot` from the start, and the live
// core holds the page's options and queue), so it is made by a throwaway second Worker
// (this same script) that starts its own Pyodide, imports revu, snapshots and is
// terminated: its memory goes with it. The page starts that Worker (bridge.js) a
// couple of seconds after ready, off the page's and this Worker's threads. It is not
// nested in this Worker: in Firefox a nested Worker making its snapshot sometimes left
// this one answering nothing more (docs/browsers.md). Stored gzipped in Cache Storage
// under a key naming the Pyodide version, the stdlib zip's sha256 and this Worker's
// file, so a new build never restores an old snapshot. Anything wrong with a cached snapshot (a missing or bad
// entry, a failed gunzip, a header for another zip, Pyodide refusing it) deletes it and
// starts normally: the cache can make a start faster, never fail it.

const SNAPSHOT_CACHE = "revu-core-snapshot-v1";

function debug(...args) {
  try {
    console.debug("revu: snapshot cache:", ...args);
  } catch {
    // logging only
  }
}

/** @returns {string|null} the Request URL the snapshot is cached under, null when there is no Cache Storage */
function snapshotKey(payload) {
  const { manifest, assetsUrl } = payload;
  if (typeof caches === "undefined" || typeof CompressionStream !== "function" || typeof DecompressionStream !== "function") return null;
  const sha = manifest.assets?.stdlib?.sha256;
  if (!/^[0-9a-f]{64}$/.test(sha ?? "")) return null;
  const workerFile = String(manifest.worker?.path ?? "worker").split("/").pop();
  return new URL(`revu-core-snapshot/${encodeURIComponent(manifest.pyodide ?? "pyodide")}/${sha}/${encodeURIComponent(workerFile)}`, payload.assetsUrl).href;
}

/** @returns {Promise<{bytes: Promise<Uint8Array>}|null>} the cached snapshot's bytes (a promise: gunzip runs while assets load), or null */
async function readCached(key) {
  const cache = await caches.open(SNAPSHOT_CACHE);
  const response = await cache.match(key);
  if (!response || !response.body) return null;
  const bytes = new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer().then((b) => new Uint8Array(b));
  bytes.catch(() => {}); // reported by loadPythonCore as a CoreLoadError("snapshot")
  return { bytes };
}

async function dropCached(key) {
  try {
    await (await caches.open(SNAPSHOT_CACHE)).delete(key);
  } catch (err) {
    debug("could not delete", key, err);
  }
}

/** Load the core, from the cached snapshot when there is a good one. */
async function loadWithCache(payload) {
  const opts = { assetsUrl: payload.assetsUrl, manifest: payload.manifest, timeoutMs: payload.timeoutMs };
  const key = payload.snapshotCache === false ? null : snapshotKey(payload);
  if (key) {
    let cached = null;
    try {
      cached = await readCached(key);
    } catch (err) {
      debug("cannot read Cache Storage", err);
    }
    if (cached) {
      try {
        const loaded = await loadPythonCore({
          ...opts,
          useSnapshot: false,
          snapshotBytes: cached.bytes.catch((err) => {
            throw new CoreLoadError("snapshot", `revu: the cached snapshot could not be read (${err && err.name}: ${err && err.message})`, err);
          }),
        });
        debug("restored", key);
        return { loaded, restored: true, snapshot: null };
      } catch (err) {
        debug("restore failed, starting normally:", err && err.message);
        if (!err || err.asset === "snapshot" || err.asset === "python" || err.asset === "stdlib") await dropCached(key);
      }
    }
  }
  const loaded = await loadPythonCore(opts);
  return { loaded, restored: false, snapshot: key ? { ...opts, key } : null };
}

/** In the snapshot Worker: a clean interpreter with revu imported, snapshotted into the cache. */
async function makeSnapshot(payload) {
  const { pyodide, bridge } = await loadPythonCore({
    assetsUrl: payload.assetsUrl, manifest: payload.manifest, timeoutMs: payload.timeoutMs,
    useSnapshot: false, pyodideOptions: { _makeSnapshot: true },
  });
  bridge.destroy();
  pyodide.runPython("import gc; gc.collect()");
  const raw = wrapSnapshot(pyodide.makeMemorySnapshot(), payload.manifest.assets.stdlib.sha256);
  const gz = await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer();
  try {
    const cache = await caches.open(SNAPSHOT_CACHE);
    await cache.put(payload.key, new Response(gz, { headers: { "Content-Type": "application/octet-stream" } }));
  } catch (err) {
    // Quota exceeded, storage disabled: a later visit just starts normally.
    return `0 (${err && err.name}: ${err && err.message})`;
  }
  return gz.byteLength;
}

/**
 * Compress the bodies of the sends that ask for it.
 * @param {string} out  the core's commands (JSON)
 * @returns {Promise<{result: string|object[], transfer: ArrayBuffer[]}>}
 */
async function encodeBodies(out) {
  if (!out.includes('"encoding":"gzip"') || typeof CompressionStream !== "function") return { result: out, transfer: [] };
  const commands = JSON.parse(out);
  const transfer = [];
  for (const cmd of commands) {
    if (cmd.type !== "send" || cmd.encoding !== "gzip") continue;
    const stream = new Blob([cmd.body]).stream().pipeThrough(new CompressionStream("gzip"));
    cmd.body_bytes = await new Response(stream).arrayBuffer();
    cmd.body = "";
    transfer.push(cmd.body_bytes);
  }
  return { result: commands, transfer };
}

/** @type {{start: (s: string) => string, handle: (s: string) => string}|null} */
let bridge = null;
/** @type {Promise<unknown>|null} */
let loading = null;

/**
 * @param {string} op
 * @param {any} payload
 * @returns {Promise<unknown>}
 */
async function run(op, payload) {
  switch (op) {
    case "load":
      loading = loading ?? loadWithCache(payload)
        .then(({ loaded, restored, snapshot }) => {
          bridge = loaded.bridge;
          return { restored, snapshot };
        });
      try {
        return await loading;
      } catch (err) {
        loading = null; // a later "load" (the network came back) tries again
        throw err;
      }
    case "makeSnapshot":
      return makeSnapshot(payload);
    case "start":
      if (!bridge) throw new Error("the core is not loaded");
      return String(bridge.start(payload));
    case "handle":
      if (!bridge) throw new Error("the core is not loaded");
      return encodeBodies(String(bridge.handle(payload)));
    default:
      throw new Error(`unknown request ${JSON.stringify(op)}`);
  }
}

self.onmessage = (event) => {
  const { id, op, payload } = event.data || {};
  run(op, payload).then(
    (value) => {
      if (value && typeof value === "object" && "transfer" in value) self.postMessage({ id, ok: true, result: value.result }, value.transfer);
      else self.postMessage({ id, ok: true, result: value });
    },
    (err) => self.postMessage({ id, ok: false, error: String((err && err.message) || err), name: (err && err.name) || "Error" }),
  );
};
