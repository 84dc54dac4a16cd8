// The only file that touches the Pyodide API (through core/load_core.js). Facts and
// commands cross as JSON strings, so this can move into a Web Worker without changing
// its callers.

import { loadPythonCore } from "./core/load_core.js";

/** @typedef {import("./types.js").Core} Core */

/* global __REVU_MANIFEST__ */
/**
 * The build's asset manifest, inlined by esbuild (`--define:__REVU_MANIFEST__=...`,
 * scripts/build_dist.py). Unbundled (tests), there is none and loadCore rejects.
 * @type {import("./core/load_core.js").CoreManifest|null}
 */
const MANIFEST = typeof __REVU_MANIFEST__ !== "undefined" ? __REVU_MANIFEST__ : null;

/**
 * Load the self-hosted Pyodide and the revu core from the content-hashed assets under
 * `assetsUrl`; nothing is fetched from anywhere else.
 * @param {string} assetsUrl  URL of the folder holding revu.js, ending in "/"
 * @returns {Promise<Core>}
 */
export async function loadCore(assetsUrl) {
  const { bridge } = await loadPythonCore({ assetsUrl, manifest: MANIFEST });
  return {
    start: async (optionsJson) => bridge.start(optionsJson),
    handle: async (factsJson) => bridge.handle(factsJson),
  };
}
