// Smoke check: a self-hosted Pyodide folder boots in Node and loads packages from its
// own lock file, with the network switched off.
//
//   node scripts/smoke_pyodide.mjs [--index build/pyodide-test-dist] [--load revu] [--import revu]
//
// Any attempt to fetch an http(s) URL fails the check: Pyodide in Node falls back to
// the jsDelivr CDN when a lock entry's file is missing locally, and revu never may.
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function parseArgs(argv) {
  const args = { index: "build/pyodide-test-dist", load: "revu", import: "revu" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args) || argv[i + 1] === undefined) {
      throw new Error(`usage: smoke_pyodide.mjs [--index DIR] [--load a,b] [--import a,b] (bad: ${argv[i]})`);
    }
    args[key] = argv[i + 1];
  }
  const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
  return { index: path.resolve(args.index), load: list(args.load), imports: list(args.import) };
}

async function main() {
  const { index, load, imports } = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const entry = path.join(index, "pyodide.mjs");
  if (!existsSync(entry)) throw new Error(`${entry} does not exist`);

  const blocked = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input?.url ?? String(input);
    if (/^https?:/i.test(url)) {
      blocked.push(url);
      throw new TypeError(`smoke check is offline: blocked fetch(${url})`);
    }
    return realFetch(input, init);
  };

  const { loadPyodide } = await import(pathToFileURL(entry).href);
  const py = await loadPyodide({ indexURL: index + path.sep, stdout: () => {}, stderr: (s) => console.error(s) });
  const errors = [];
  await py.loadPackage(load, { messageCallback: () => {}, errorCallback: (m) => errors.push(m) });
  if (errors.length) throw new Error(`loadPackage(${JSON.stringify(load)}) reported:\n  ${errors.join("\n  ")}`);

  const code = [
    "import sys, importlib",
    `mods = [importlib.import_module(m) for m in ${JSON.stringify(imports)}]`,
    "assert sys.platform == 'emscripten', sys.platform",
    "' '.join(f\"{m.__name__}={getattr(m, '__version__', '?')}\" for m in mods) + f' python={sys.version.split()[0]}'",
  ].join("\n");
  const result = py.runPython(code);
  if (blocked.length) throw new Error(`network was attempted: ${blocked.join(", ")}`);
  const ms = Math.round(performance.now() - t0);
  console.log(`smoke ok (${path.relative(process.cwd(), index) || "."}, ${ms} ms): ${result}`);
}

main().catch((e) => {
  console.error(`smoke_pyodide: FAILED: ${e?.stack ?? e}`);
  process.exit(1);
});
