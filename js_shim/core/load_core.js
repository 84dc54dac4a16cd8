// Loads Pyodide and the revu core from the self-hosted, content-hashed assets that the
// build lists in its manifest, and nothing else. Runs on the main thread, in a dedicated
// module Worker and under Node (the build's smoke check): it uses only fetch,
// WebAssembly, dynamic import(), setTimeout and AbortController; no DOM.
//
// Why it drives the fetches itself instead of letting Pyodide do them: every asset gets
// a timeout, an HTTP status check and a type check, and every failure becomes one Error
// that names the asset and the cause; Pyodide's own loader retries nothing, has no
// timeout, and on a failed wasm compile only logs a warning and waits forever. The
// build ships Pyodide's loader (pyodide.<hash>.mjs) with two small, checked patches
// (scripts/build_dist.py, PYODIDE_LOADER_PATCHES): it never fetches pyodide.asm.wasm
// itself (this file compiles it and hands it over through `instantiateWasm`), and it
// takes the stdlib zip as bytes instead of a URL. The lock file is inline in the
// manifest, so no request is made for it.
//
// All requests start at once: the wasm is compiled while it streams in
// (`WebAssembly.compileStreaming`, which needs `Content-Type: application/wasm` and lets
// Chromium cache the compiled code next to an HTTP-cached response), in parallel with the
// stdlib zip, the two JavaScript modules and, when the build made one, the memory
// snapshot.

/** Default time allowed for each asset (request, download and, for the wasm, compile). */
export const DEFAULT_TIMEOUT_MS = 60_000;

const REQUIRED_ASSETS = ["loader", "asm", "wasm", "stdlib"];
const JS_TYPES = new Set(["text/javascript", "application/javascript", "application/x-javascript", "text/ecmascript", "application/ecmascript"]);
const SNAPSHOT_MAGIC = "REVUSNP1";
/** Bytes before Pyodide's own snapshot: magic, version 1, sha256 (hex) of the stdlib zip it was made with. */
export const SNAPSHOT_HEADER_BYTES = 128;

/** A start-up failure: `asset` names the manifest entry (or "python" for the interpreter). */
export class CoreLoadError extends Error {
  /**
   * @param {string} asset
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(asset, message, cause) {
    super(message);
    this.name = "CoreLoadError";
    this.asset = asset;
    if (cause !== undefined) this.cause = cause;
  }
}

/**
 * @typedef {object} AssetEntry
 * @property {string} path    relative to assetsUrl, e.g. "assets/pyodide.asm.3f2a….wasm"
 * @property {number} [bytes] raw size
 * @property {string} [sha256]
 * @property {string} [stdlibSha256]  (snapshot only) the stdlib zip it was made with
 */

/**
 * @typedef {object} CoreManifest
 * @property {number} version                 1
 * @property {string} pyodide                 Pyodide version
 * @property {{loader: AssetEntry, asm: AssetEntry, wasm: AssetEntry, stdlib: AssetEntry, snapshot?: AssetEntry}} assets
 * @property {object} lock                    Pyodide lock file contents (no packages: revu is in the stdlib zip)
 */

/**
 * Load Pyodide and construct the revu core's JSON bridge.
 *
 * @param {object} opts
 * @param {string} opts.assetsUrl  absolute URL of the folder revu.js is served from (dist/), ending in "/"
 * @param {CoreManifest} opts.manifest  the build's asset manifest
 * @param {typeof fetch} [opts.fetchImpl]  defaults to globalThis.fetch (Node's smoke check passes a file reader)
 * @param {number} [opts.timeoutMs]  per asset, default DEFAULT_TIMEOUT_MS; also bounds the interpreter's start once every asset is in
 * @param {boolean} [opts.useSnapshot]  use the manifest's memory snapshot when it has one (default true)
 * @param {object} [opts.pyodideOptions]  extra loadPyodide options (build tools only, e.g. `_makeSnapshot`)
 * @returns {Promise<{pyodide: any, bridge: any}>}  `bridge` is a `revu.Bridge()` PyProxy: `start(str) -> str`, `handle(str) -> str`
 * @throws {CoreLoadError} naming the asset and the cause (HTTP status, wrong type, network error, timeout,
 *   failed compile, corrupt file, Python start-up failure); it never hangs
 */
export async function loadPythonCore({
  assetsUrl, manifest, fetchImpl, timeoutMs = DEFAULT_TIMEOUT_MS, useSnapshot = true, pyodideOptions = {},
} = /** @type {any} */ ({})) {
  const fetcher = fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : null);
  if (!fetcher) throw new CoreLoadError("manifest", "revu: no fetch() in this environment to load the Python core");
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new CoreLoadError("manifest", `revu: timeoutMs must be a positive number, not ${timeoutMs}`);
  const base = checkBase(assetsUrl);
  checkManifest(manifest);
  const assets = manifest.assets;
  const url = (key) => resolveAsset(base, key, assets[key].path);
  const snapshotEntry = useSnapshot ? assets.snapshot : undefined;

  // One failure stops everything: the other downloads are aborted and their errors ignored.
  const stopAll = new AbortController();
  let rejectFirst;
  const firstFailure = new Promise((_, reject) => { rejectFirst = reject; });
  firstFailure.catch(() => {});
  const fail = (err) => {
    rejectFirst(err);
    stopAll.abort();
  };
  /** @template T @param {Promise<T>} p @returns {Promise<T>} */
  const watched = (p) => {
    p.catch(fail);
    return p;
  };

  const ctx = { fetcher, timeoutMs, stopAll: stopAll.signal };
  mark("start");
  const done = (step) => (value) => {
    mark(step);
    return value;
  };
  const loaderP = watched(importAsset(ctx, "loader", url("loader")).then(done("loader")));
  const asmP = watched(importAsset(ctx, "asm", url("asm")).then(done("asm")));
  const wasmP = watched(compileWasm(ctx, url("wasm")).then(done("wasm")));
  const stdlibP = watched(fetchBytes(ctx, "stdlib", url("stdlib")).then((bytes) => checkZip(bytes, url("stdlib"))).then(done("stdlib")));
  const snapshotP = snapshotEntry
    ? watched(fetchBytes(ctx, "snapshot", url("snapshot"))
      .then((bytes) => unwrapSnapshot(bytes, url("snapshot"), assets.stdlib.sha256)).then(done("snapshot")))
    : null;

  const boot = async () => {
    const [{ loadPyodide }, asm] = await Promise.all([loaderP, asmP]);
    if (typeof loadPyodide !== "function") throw new CoreLoadError("loader", `revu: ${url("loader")} does not export loadPyodide`);
    if (typeof asm.default !== "function") throw new CoreLoadError("asm", `revu: ${url("asm")} does not export the Pyodide module factory`);
    const stderr = [];
    const keep = (line) => {
      stderr.push(line);
      if (stderr.length > 20) stderr.shift();
    };
    // Wait for every asset first, so that a slow or failed download is reported as such.
    await Promise.all([wasmP, stdlibP, ...(snapshotP ? [snapshotP] : [])]);
    let pyodide;
    try {
      pyodide = await withDeadline(
        loadPyodide({
          indexURL: indexUrlFor(url("loader")),
          packageBaseUrl: indexUrlFor(url("loader")),
          lockFileContents: manifest.lock,
          // Patched loader: bytes (a promise) instead of a URL, see the header comment.
          stdLibURL: stdlibP,
          createPyodideModule: (settings) => {
            settings.instantiateWasm = (imports, onInstance) => {
              instantiate(wasmP, imports, onInstance, url("wasm")).catch(fail);
              return {};
            };
            return asm.default(settings);
          },
          ...(snapshotP ? { _loadSnapshot: snapshotP } : {}),
          stdout: () => {},
          stderr: keep,
          ...pyodideOptions,
        }),
        timeoutMs,
        () => new CoreLoadError("python", `revu: the Python runtime did not start within ${timeoutMs} ms after its assets arrived`),
      );
    } catch (err) {
      if (err instanceof CoreLoadError) throw err;
      if (snapshotP && /snapshot/i.test(String(err && err.message))) {
        // Pyodide's own check: another Pyodide build, or not a snapshot at all.
        throw new CoreLoadError("snapshot", `revu: ${url("snapshot")} (snapshot) was refused by Pyodide: ${describe(err)}`, err);
      }
      const exit = err && typeof err.status === "number" ? ` (exit status ${err.status})` : "";
      const detail = stderr.length ? `: ${stderr.join(" | ")}` : `: ${describe(err)}`;
      throw new CoreLoadError("python", `revu: the Python runtime failed to start${exit}${detail}`, err);
    }
    mark("python");
    let bridge;
    try {
      const revu = pyodide.pyimport("revu");
      bridge = revu.Bridge();
      revu.destroy();
    } catch (err) {
      throw new CoreLoadError("stdlib", `revu: the revu core could not be imported from ${url("stdlib")}: ${lastLine(err)}`, err);
    }
    mark("ready");
    return { pyodide, bridge };
  };

  return Promise.race([firstFailure, boot()]);
}

// ---------------------------------------------------------------------------- assets

function checkBase(assetsUrl) {
  let base;
  try {
    base = new URL(String(assetsUrl));
  } catch {
    throw new CoreLoadError("manifest", `revu: assetsUrl must be an absolute URL, not ${JSON.stringify(assetsUrl)}`);
  }
  if (!base.pathname.endsWith("/")) base = new URL(".", base);
  base.search = "";
  base.hash = "";
  return base;
}

function checkManifest(manifest) {
  if (!manifest || typeof manifest !== "object" || !manifest.assets || typeof manifest.assets !== "object") {
    throw new CoreLoadError("manifest", "revu: no asset manifest (revu.js was built without one: run the build again)");
  }
  for (const key of REQUIRED_ASSETS) {
    if (!manifest.assets[key] || typeof manifest.assets[key].path !== "string") {
      throw new CoreLoadError("manifest", `revu: the asset manifest has no "${key}" entry (an incomplete build)`);
    }
  }
  if (!manifest.lock || typeof manifest.lock !== "object") {
    throw new CoreLoadError("manifest", "revu: the asset manifest has no inline lock file");
  }
}

/** Every asset stays inside assetsUrl: no other origin, no other folder. */
function resolveAsset(base, key, path) {
  if (/^[a-z][a-z0-9+.-]*:|^\/|\\|(^|\/)\.\.(\/|$)/i.test(path)) {
    throw new CoreLoadError(key, `revu: asset path ${JSON.stringify(path)} (${key}) must be relative to assetsUrl`);
  }
  const resolved = new URL(path, base);
  if (!resolved.href.startsWith(base.href)) {
    throw new CoreLoadError(key, `revu: asset ${key} resolves outside assetsUrl (${resolved.href})`);
  }
  return resolved.href;
}

/** Pyodide wants an indexURL; with the patched loader it fetches nothing from it. */
function indexUrlFor(assetUrl) {
  const dir = new URL(".", assetUrl);
  return dir.protocol === "file:" ? decodeURIComponent(dir.pathname) : dir.href;
}

/**
 * Run `work(signal)` under the asset's timeout; the signal aborts the request (and its
 * body) on timeout and when another asset has failed.
 */
async function timed(ctx, key, assetUrl, work) {
  const controller = new AbortController();
  const onStop = () => controller.abort();
  ctx.stopAll.addEventListener("abort", onStop, { once: true });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new CoreLoadError(key, `revu: ${assetUrl} (${key}) timed out after ${ctx.timeoutMs} ms`));
    }, ctx.timeoutMs);
  });
  try {
    return await Promise.race([work(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
    ctx.stopAll.removeEventListener("abort", onStop);
  }
}

async function request(ctx, key, assetUrl, signal) {
  let response;
  try {
    response = await ctx.fetcher(assetUrl, { signal, credentials: "same-origin" });
  } catch (err) {
    throw new CoreLoadError(key, `revu: ${assetUrl} (${key}) could not be fetched: network error or a cross-origin request without CORS (${describe(err)})`, err);
  }
  if (!response.ok) {
    throw new CoreLoadError(key, `revu: ${assetUrl} (${key}) answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
  }
  return response;
}

function mediaType(response) {
  return (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
}

function fetchBytes(ctx, key, assetUrl) {
  return timed(ctx, key, assetUrl, async (signal) => {
    const response = await request(ctx, key, assetUrl, signal);
    try {
      return new Uint8Array(await response.arrayBuffer());
    } catch (err) {
      throw new CoreLoadError(key, `revu: ${assetUrl} (${key}) broke off while downloading (${describe(err)})`, err);
    }
  });
}

function compileWasm(ctx, assetUrl) {
  return timed(ctx, "wasm", assetUrl, async (signal) => {
    const response = await request(ctx, "wasm", assetUrl, signal);
    const type = mediaType(response);
    if (type !== "application/wasm") {
      throw new CoreLoadError("wasm", `revu: ${assetUrl} (wasm) is served as ${type ? `"${type}"` : "no Content-Type"}; ` +
        "WebAssembly needs Content-Type: application/wasm (see docs/serving.md)");
    }
    try {
      if (typeof WebAssembly.compileStreaming === "function") return await WebAssembly.compileStreaming(response);
      return await WebAssembly.compile(await response.arrayBuffer());
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      const hint = /magic|expected/i.test(String(err && err.message))
        ? " (the bytes are not WebAssembly: a compressed file served without Content-Encoding?)" : "";
      throw new CoreLoadError("wasm", `revu: ${assetUrl} (wasm) failed to compile: ${describe(err)}${hint}`, err);
    }
  });
}

async function instantiate(wasmP, imports, onInstance, assetUrl) {
  const module = await wasmP;
  // What Pyodide's own instantiateWasm adds (its JS fallback, used on iOS): a marker
  // value for "a JavaScript error is pending".
  const errorMarker = Symbol("error marker");
  imports.env.Jsv_GetError_import = () => errorMarker;
  imports.env.JsvError_Check = (value) => value === errorMarker;
  let instance;
  try {
    instance = await WebAssembly.instantiate(module, imports);
  } catch (err) {
    throw new CoreLoadError("wasm", `revu: ${assetUrl} (wasm) failed to instantiate (does it match the asm module?): ${describe(err)}`, err);
  }
  onInstance(instance, module);
}

/**
 * import() cannot be given a timeout or say why it failed, so race it against the
 * timeout and, when it fails, ask the server with a plain request what was wrong.
 */
async function importAsset(ctx, key, assetUrl) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CoreLoadError(key, `revu: ${assetUrl} (${key}) timed out after ${ctx.timeoutMs} ms`)), ctx.timeoutMs);
  });
  try {
    return await Promise.race([import(/* webpackIgnore: true */ assetUrl), timeout]);
  } catch (err) {
    if (err instanceof CoreLoadError) throw err;
    const diagnosis = await diagnoseModule(ctx, key, assetUrl).catch((e) => e);
    if (diagnosis instanceof CoreLoadError) throw diagnosis;
    throw new CoreLoadError(key, `revu: ${assetUrl} (${key}) failed to load as a JavaScript module: ${describe(err)}`, err);
  } finally {
    clearTimeout(timer);
  }
}

async function diagnoseModule(ctx, key, assetUrl) {
  const probe = { ...ctx, stopAll: new AbortController().signal };
  await timed(probe, key, assetUrl, async (signal) => {
    const response = await request(probe, key, assetUrl, signal);
    const type = mediaType(response);
    await response.body?.cancel?.();
    if (!JS_TYPES.has(type)) {
      throw new CoreLoadError(key, `revu: ${assetUrl} (${key}) is served as ${type ? `"${type}"` : "no Content-Type"}; ` +
        "module scripts need text/javascript (see docs/serving.md)");
    }
  });
}

function checkZip(bytes, assetUrl) {
  // A local file header ("PK\3\4") first; a stored zip of .pyc files has nothing else there.
  if (!(bytes.length > 22 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04)) {
    throw new CoreLoadError("stdlib", `revu: ${assetUrl} (stdlib) is not a zip file (starts with ${hex(bytes.subarray(0, 4))}): ` +
      "a compressed copy served without its Content-Encoding header?");
  }
  return bytes;
}

/** Check the snapshot header against the stdlib zip it must be used with; return Pyodide's part. */
function unwrapSnapshot(bytes, assetUrl, stdlibSha256) {
  const head = new TextDecoder().decode(bytes.subarray(0, SNAPSHOT_HEADER_BYTES));
  if (bytes.length <= SNAPSHOT_HEADER_BYTES || !head.startsWith(SNAPSHOT_MAGIC)) {
    throw new CoreLoadError("snapshot", `revu: ${assetUrl} (snapshot) is not a revu memory snapshot (starts with ${hex(bytes.subarray(0, 8))})`);
  }
  const madeWith = head.slice(SNAPSHOT_MAGIC.length, SNAPSHOT_MAGIC.length + 64);
  if (!stdlibSha256 || madeWith !== stdlibSha256) {
    throw new CoreLoadError("snapshot", `revu: ${assetUrl} (snapshot) was made with another stdlib zip ` +
      `(${madeWith.slice(0, 12)}…, this build's is ${String(stdlibSha256).slice(0, 12)}…): a stale snapshot is never used`);
  }
  return bytes.subarray(SNAPSHOT_HEADER_BYTES);
}

// ---------------------------------------------------------------------------- helpers

/** User Timing marks ("revu:core:<step>"), for profiling start-up in devtools or a bench. */
function mark(step) {
  try {
    globalThis.performance?.mark?.(`revu:core:${step}`);
  } catch {
    // marks are diagnostics only
  }
}

function withDeadline(promise, ms, makeError) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function describe(err) {
  if (!err) return String(err);
  const name = err.name && err.name !== "Error" ? `${err.name}: ` : "";
  return `${name}${err.message ?? String(err)}`;
}

function lastLine(err) {
  const lines = String(err && err.message ? err.message : err).trim().split("\n");
  return lines[lines.length - 1];
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}
