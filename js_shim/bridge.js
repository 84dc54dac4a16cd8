// The only file that talks to the core: it lives in a dedicated module Worker
// (core_host/worker.js), so Pyodide never starts on the page's main thread.
// Facts and commands cross as JSON strings in messages.
//
// The Worker's script is a content-hashed asset the build lists in its
// manifest (inlined into revu.js as __REVU_MANIFEST__). It is created
// directly when that URL is same-origin with the page, else through a
// `blob:` module that imports it (a Worker script must be same-origin; the
// import may be cross-origin with CORS). Inside, core/load_core.js loads
// Pyodide and the core from the manifest's assets. Every way this can fail
// (the Worker refused by CSP `worker-src`, its script missing or served with
// the wrong MIME type, an asset failing, a hang) rejects within `timeoutMs`.

/** @typedef {import("./types.js").Core} Core */

/* global __REVU_MANIFEST__ */
/**
 * The build's asset manifest, inlined by esbuild (`--define:__REVU_MANIFEST__=...`,
 * scripts/build_dist.py). Unbundled (tests), there is none and loadCore rejects.
 * @type {(import("./core/load_core.js").CoreManifest & {worker?: {path: string}})|null}
 */
const MANIFEST = typeof __REVU_MANIFEST__ !== "undefined" ? __REVU_MANIFEST__ : null;

/** After ready, the snapshot Worker waits this long (the page's own start-up goes first). */
const SNAPSHOT_DELAY_MS = 2000;

/**
 * @param {string} url
 * @param {string} [name]
 * @returns {Worker}
 * @throws when the browser refuses to create it
 */
function createWorker(url, name = "revu-core") {
  const here = globalThis.location ? globalThis.location.origin : null;
  if (here && new URL(url).origin === here) return new Worker(url, { type: "module", name });
  const source = `import ${JSON.stringify(url)};`;
  const blobUrl = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return new Worker(blobUrl, { type: "module", name });
  } finally {
    setTimeout(() => URL.revokeObjectURL(blobUrl), 60000);
  }
}

/**
 * Make the memory snapshot a later visit starts from, in a throwaway Worker of
 * its own (core_host/worker.js, "snapshot cache"); it is terminated when done,
 * and its memory goes with it. Nothing depends on it: any failure only means
 * the next visit starts normally.
 * @param {string} workerUrl
 * @param {object} payload  the core Worker's "makeSnapshot" payload
 * @returns {void}
 */
function makeSnapshotInWorker(workerUrl, payload) {
  const note = (what) => {
    try {
      console.debug("revu: snapshot cache:", what);
    } catch {
      // logging only
    }
  };
  let worker;
  try {
    worker = createWorker(workerUrl, "revu-core-snapshot");
  } catch (err) {
    note(`no snapshot Worker here: ${err && err.message}`);
    return;
  }
  const began = performance.now();
  const done = (what) => {
    clearTimeout(timer);
    note(`${what} (${Math.round(performance.now() - began)} ms in the snapshot Worker)`);
    worker.terminate();
  };
  const timer = setTimeout(() => done("making the snapshot timed out"), payload.timeoutMs * 2);
  worker.addEventListener("message", (event) => {
    const { ok, result, error } = event.data || {};
    done(ok ? `stored ${result} bytes (gzip)` : `not stored: ${error}`);
  });
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    done(`the snapshot Worker failed: ${event.message}`);
  });
  worker.postMessage({ id: 1, op: "makeSnapshot", payload });
}

/**
 * Start the core's Worker and load Pyodide + revu in it.
 * @param {string} assetsUrl  URL of the folder holding revu.js, ending in "/"
 * @param {{timeoutMs?: number, snapshotCache?: boolean}} [options]  snapshotCache: false never reads or writes
 *   the Worker's cached memory snapshot (docs/serving.md)
 * @returns {Promise<Core & {terminate: () => void}>}
 * @throws {Error} with a message naming what failed
 */
export async function loadCore(assetsUrl, { timeoutMs = 60000, manifest = MANIFEST, snapshotCache = true } = {}) {
  if (!manifest || !manifest.worker || typeof manifest.worker.path !== "string") {
    throw new Error("no asset manifest (revu.js was built without one: run the build, scripts/build_dist.py)");
  }
  const workerUrl = new URL(manifest.worker.path, assetsUrl).href;
  let worker;
  try {
    worker = createWorker(workerUrl);
  } catch (err) {
    throw new Error(`the browser refused to start the core's Worker (${err && err.name}: ${err && err.message}); check the page's CSP worker-src`);
  }
  let seq = 0;
  /** @type {Map<number, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
  const calls = new Map();
  let broken = null;
  const failAll = (message) => {
    broken = broken ?? message;
    for (const { reject } of calls.values()) reject(new Error(broken));
    calls.clear();
  };
  worker.addEventListener("message", (event) => {
    const { id, ok, result, error, name } = event.data || {};
    const call = calls.get(id);
    if (!call) return;
    calls.delete(id);
    if (ok) call.resolve(result);
    else {
      const err = new Error(error);
      if (typeof name === "string") err.name = name; // e.g. CoreLoadError, from core/load_core.js
      call.reject(err);
    }
  });
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    failAll(`the core's Worker failed (${event.message || `${workerUrl} did not load: missing, wrong MIME type, or blocked`})`);
  });
  worker.addEventListener("messageerror", () => failAll("a message from the core's Worker could not be read"));

  /** @param {string} op @param {unknown} payload @param {number} [limitMs] @returns {Promise<any>} */
  const call = (op, payload, limitMs) => {
    if (broken) return Promise.reject(new Error(broken));
    const id = ++seq;
    return new Promise((resolve, reject) => {
      let timer = null;
      const done = (fn) => (value) => {
        if (timer) clearTimeout(timer);
        fn(value);
      };
      calls.set(id, { resolve: done(resolve), reject: done(reject) });
      if (limitMs) {
        timer = setTimeout(() => {
          calls.delete(id);
          reject(new Error(`the core did not ${op} within ${limitMs} ms`));
        }, limitMs);
      }
      worker.postMessage({ id, op, payload });
    });
  };

  try {
    const loaded = await call("load", { assetsUrl, manifest, timeoutMs, snapshotCache }, timeoutMs + 1000);
    if (loaded && loaded.restored) {
      try {
        performance.mark("revu:core:snapshot-restored");
      } catch {
        // marks are diagnostics only
      }
    }
    if (loaded && loaded.snapshot) setTimeout(() => makeSnapshotInWorker(workerUrl, loaded.snapshot), SNAPSHOT_DELAY_MS);
  } catch (err) {
    worker.terminate();
    throw err;
  }
  return {
    start: (optionsJson) => call("start", optionsJson, timeoutMs),
    handle: (factsJson) => call("handle", factsJson),
    terminate: () => {
      failAll("the core's Worker was stopped");
      worker.terminate();
    },
  };
}
