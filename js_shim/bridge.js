// The only file that touches the Pyodide API. Facts and commands cross as JSON
// strings, so this can move into a Web Worker without changing its callers.

/** @typedef {import("./types.js").Core} Core */

/**
 * Load the self-hosted Pyodide from `<assetsUrl>pyodide/` and the revu wheel
 * listed in its lock file; nothing is fetched from anywhere else.
 * @param {string} assetsUrl  URL of the folder holding revu.js, ending in "/"
 * @returns {Promise<Core>}
 */
export async function loadCore(assetsUrl) {
  const indexURL = new URL("pyodide/", assetsUrl).href;
  const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL).href);
  const pyodide = await loadPyodide({ indexURL, stdout: () => {}, stderr: () => {} });
  const problems = [];
  await pyodide.loadPackage("revu", { messageCallback: () => {}, errorCallback: (m) => problems.push(m) });
  if (problems.length) throw new Error(`loading the revu wheel failed: ${problems.join("; ")}`);
  const bridge = pyodide.pyimport("revu").Bridge();
  return {
    start: async (optionsJson) => bridge.start(optionsJson),
    handle: async (factsJson) => bridge.handle(factsJson),
  };
}
