// The entry point of the core's dedicated Worker: Pyodide and the Python core
// live here, off the page's main thread. Requests arrive as messages
// `{id, op, payload}` and are answered `{id, ok, result | error}`; facts and
// commands stay JSON strings, exactly as on the main thread before.
//
//   op "load"   {assetsUrl, manifest, timeoutMs}  load Pyodide + revu -> true
//   op "start"  optionsJson  Bridge.start                 -> JSON string
//   op "handle" factsJson    Bridge.handle                -> JSON string, or the
//                            parsed commands when a `send` asked for gzip: its
//                            body is compressed here (CompressionStream, off
//                            the page's main thread) and travels as
//                            `body_bytes` (an ArrayBuffer, transferred).

import { loadPythonCore } from "../core/load_core.js";

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
      loading = loading ?? loadPythonCore({ assetsUrl: payload.assetsUrl, manifest: payload.manifest, timeoutMs: payload.timeoutMs })
        .then((loaded) => {
          bridge = loaded.bridge;
          return true;
        });
      try {
        return await loading;
      } catch (err) {
        loading = null; // a later "load" (the network came back) tries again
        throw err;
      }
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
