// Load Pyodide and the revu core from the self-hosted folder. Runs inside the
// core's Worker (no DOM); never fetches from anywhere but `<assetsUrl>pyodide/`.

/**
 * @param {string} assetsUrl  URL of the folder holding revu.js, ending in "/"
 * @returns {Promise<{start: (optionsJson: string) => string, handle: (factsJson: string) => string}>}
 *   the Python `revu.Bridge` (JSON strings in and out)
 * @throws {Error} naming the step that failed
 */
export async function loadRevuCore(assetsUrl) {
  const indexURL = new URL("pyodide/", assetsUrl).href;
  let loadPyodide;
  try {
    ({ loadPyodide } = await import(/* @vite-ignore */ new URL("pyodide.mjs", indexURL).href));
  } catch (err) {
    throw new Error(`loading ${indexURL}pyodide.mjs failed (${err && err.message})`);
  }
  const pyodide = await loadPyodide({ indexURL, stdout: () => {}, stderr: () => {} });
  const problems = [];
  await pyodide.loadPackage("revu", { messageCallback: () => {}, errorCallback: (m) => problems.push(m) });
  if (problems.length) throw new Error(`loading the revu wheel failed: ${problems.join("; ")}`);
  return pyodide.pyimport("revu").Bridge();
}
