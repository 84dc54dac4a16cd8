// Build steps for the trimmed Python core, run by scripts/build_dist.py (Node + Pyodide).
//
//   node scripts/core_build.mjs trace    --pyodide node_modules/pyodide --src py_src --zip OUT.zip --report OUT.json [--optimize 1]
//       Boot Pyodide with its full stdlib, put the revu sources in site-packages, work the
//       core through its JSON bridge (scripts/core_exercise.mjs), record every module the
//       interpreter imported, compile them to .pyc with Pyodide's own Python and write a
//       stored (uncompressed) zip of exactly those, revu included. The report holds the
//       module list and the transcript of the workout.
//
//   node scripts/core_build.mjs verify   --dist DIR --manifest FILE --report FILE [--no-snapshot]
//       Load the core from DIR through js_shim/core/load_core.js (offline: only the files
//       the manifest lists can be read), run the same workout and require the very same
//       transcript. A module missing from the trimmed zip fails here, at build time.
//
//   node scripts/core_build.mjs snapshot --dist DIR --manifest FILE --report FILE --out FILE
//       Load the core from DIR (no snapshot), work it once so lazily imported modules are
//       in memory, and write a memory snapshot (Pyodide's undocumented _makeSnapshot)
//       behind a 128-byte revu header naming the stdlib zip it belongs to.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { loadPythonCore, SNAPSHOT_HEADER_BYTES } from "../js_shim/core/load_core.js";
import { exerciseCore } from "./core_exercise.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const args = { command, flags: new Set() };
  for (let i = 0; i < rest.length; i += 1) {
    const key = rest[i].replace(/^--/, "");
    if (key.startsWith("no-")) {
      args.flags.add(key);
    } else {
      if (rest[i + 1] === undefined) throw new Error(`--${key} needs a value`);
      args[key] = rest[i + 1];
      i += 1;
    }
  }
  return args;
}

function need(args, ...keys) {
  for (const k of keys) if (args[k] === undefined) throw new Error(`${args.command}: --${k} is required`);
}

/** Make every http(s) request fail: the build is offline and the core must not fetch. */
function blockNetwork() {
  const blocked = [];
  const real = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input?.url ?? String(input);
    if (/^https?:/i.test(url)) {
      blocked.push(url);
      throw new TypeError(`build is offline: blocked fetch(${url})`);
    }
    return real(input, init);
  };
  return blocked;
}

// ---------------------------------------------------------------------------- trace

function copyTree(FS, from, to) {
  FS.mkdirTree(to);
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if (entry.name === "__pycache__" || entry.name.endsWith(".egg-info")) continue;
    const src = path.join(from, entry.name);
    if (entry.isDirectory()) copyTree(FS, src, `${to}/${entry.name}`);
    else if (entry.name.endsWith(".py")) FS.writeFile(`${to}/${entry.name}`, fs.readFileSync(src));
  }
}

async function trace(args) {
  need(args, "pyodide", "src", "zip", "report");
  const optimize = Number(args.optimize ?? 1);
  const blocked = blockNetwork();
  const { loadPyodide } = await import(pathToFileURL(path.resolve(args.pyodide, "pyodide.mjs")).href);
  const stderr = [];
  const py = await loadPyodide({
    indexURL: path.resolve(args.pyodide) + path.sep,
    stdout: () => {},
    stderr: (line) => stderr.push(line),
  });
  // (sys is built in: asking it imports nothing that would end up in the trace)
  const site = py.runPython("import sys\nsite = '/lib/python%d.%d/site-packages' % sys.version_info[:2]\nassert site in sys.path, sys.path\nsite");
  copyTree(py.FS, path.resolve(args.src, "revu"), `${site}/revu`);
  py.runPython("import importlib; importlib.invalidate_caches()");

  // The same calls load_core.js and bridge.js make.
  const revu = py.pyimport("revu");
  const bridge = revu.Bridge();
  const factTypes = py.runPython("import revu._bridge; sorted(revu._bridge._FACTS)").toJs();
  const transcript = await exerciseCore(bridge, factTypes);
  bridge.destroy();
  revu.destroy();

  const scope = py.toPy({});
  const helpers = py.toPy({});
  const moduleNames = () => py.runPython("import sys; sorted(sys.modules)").toJs();
  const before = moduleNames();
  py.runPython(fs.readFileSync(path.join(HERE, "core_zip.py"), "utf8"), { globals: helpers });
  const extra = moduleNames().filter((m) => !before.includes(m));
  if (extra.length) throw new Error(`scripts/core_zip.py imported ${extra.join(", ")}, which would pollute the trace`);
  const named = JSON.parse(helpers.get("import_static_imports")(`${site}/revu`));
  py.runPython("import sys\nnames = sorted(sys.modules)", { globals: scope });
  const names = JSON.stringify(scope.get("names").toJs());
  const modules = JSON.parse(helpers.get("imported_modules")(names));
  const sizes = JSON.parse(helpers.get("write_zip")(JSON.stringify(modules), "/tmp/revu_core.zip", optimize));
  fs.writeFileSync(args.zip, py.FS.readFile("/tmp/revu_core.zip"));
  if (blocked.length) throw new Error(`the trace tried the network: ${blocked.join(", ")}`);
  const revuModules = modules.filter(([name]) => name === "revu" || name.startsWith("revu."));
  if (!revuModules.length) throw new Error("the trace did not import revu from site-packages");
  const report = { optimize, factTypes, named, modules, sizes, transcript, stderr };
  fs.writeFileSync(args.report, JSON.stringify(report, null, 1) + "\n");
  const total = sizes.reduce((n, [, b]) => n + b, 0);
  console.log(`trace ok: ${modules.length} modules (${revuModules.length} of revu), ` +
    `${total.toLocaleString("en")} bytes of .pyc (optimize=${optimize}), ${transcript.length} bridge calls`);
}

// ---------------------------------------------------------------------------- load from a dist

const TYPES = { ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript", ".zip": "application/zip" };

/** fetch() over the files of `dir`, allowing only the listed paths; records every request. */
function fileFetch(dir, allowed) {
  const base = pathToFileURL(dir + path.sep).href;
  const requests = [];
  const impl = async (input, init) => {
    const url = String(input);
    requests.push(url);
    if (init?.signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (!url.startsWith(base)) throw new TypeError(`offline smoke check: ${url} is outside ${base}`);
    const rel = decodeURIComponent(url.slice(base.length));
    if (!allowed.has(rel)) return new Response("not listed in the manifest", { status: 404, statusText: "Not Found" });
    const file = path.join(dir, rel);
    if (!fs.existsSync(file)) return new Response("missing", { status: 404, statusText: "Not Found" });
    const type = TYPES[path.extname(file)] ?? "application/octet-stream";
    return new Response(fs.readFileSync(file), { status: 200, headers: { "Content-Type": type } });
  };
  return { impl, requests };
}

async function loadFromDist(args, extra = {}) {
  const dist = path.resolve(args.dist);
  const manifest = JSON.parse(fs.readFileSync(args.manifest, "utf8"));
  const allowed = new Set(Object.values(manifest.assets).map((a) => a.path));
  const { impl, requests } = fileFetch(dist, allowed);
  const t0 = performance.now();
  const core = await loadPythonCore({ assetsUrl: pathToFileURL(dist + path.sep).href, manifest, fetchImpl: impl, ...extra });
  return { ...core, manifest, requests, ms: Math.round(performance.now() - t0) };
}

async function verify(args) {
  need(args, "dist", "manifest", "report");
  const blocked = blockNetwork();
  const report = JSON.parse(fs.readFileSync(args.report, "utf8"));
  const useSnapshot = !args.flags.has("no-snapshot");
  const { pyodide, bridge, manifest, requests, ms } = await loadFromDist(args, { useSnapshot });
  const transcript = await exerciseCore(bridge, report.factTypes);
  const diff = transcript.findIndex((line, i) => line !== report.transcript[i]);
  if (diff >= 0 || transcript.length !== report.transcript.length) {
    const i = diff >= 0 ? diff : Math.min(transcript.length, report.transcript.length);
    throw new Error(`the trimmed core answers differently from the full one at call ${i}:\n` +
      `  full:    ${report.transcript[i]}\n  trimmed: ${transcript[i]}`);
  }
  // Prove the trimmed zip is what was loaded: a stdlib module the core never imports is absent.
  const absent = pyodide.runPython("import importlib.util\n[m for m in ('sqlite3', 'xml', 'unittest') if importlib.util.find_spec(m)]").toJs();
  if (absent.length) throw new Error(`the loaded stdlib is not the trimmed one: it has ${absent.join(", ")}`);
  const expected = Object.entries(manifest.assets)
    .filter(([key]) => !["loader", "asm"].includes(key) && (useSnapshot || key !== "snapshot"))
    .map(([, a]) => pathToFileURL(path.join(path.resolve(args.dist), a.path)).href).sort();
  if (JSON.stringify([...requests].sort()) !== JSON.stringify(expected)) {
    throw new Error(`unexpected requests:\n  made:     ${requests.join("\n            ")}\n  expected: ${expected.join("\n            ")}`);
  }
  if (blocked.length) throw new Error(`the core tried the network: ${blocked.join(", ")}`);
  const snap = useSnapshot && manifest.assets.snapshot ? "with its memory snapshot" : "without a snapshot";
  console.log(`core smoke ok (${path.relative(process.cwd(), args.dist) || "."}, ${snap}, ${ms} ms to ready): ` +
    `${transcript.length} bridge calls answered exactly as on the full stdlib`);
}

async function snapshot(args) {
  need(args, "dist", "manifest", "report", "out");
  const blocked = blockNetwork();
  const report = JSON.parse(fs.readFileSync(args.report, "utf8"));
  const { pyodide, bridge, manifest } = await loadFromDist(args, { useSnapshot: false, pyodideOptions: { _makeSnapshot: true } });
  await exerciseCore(bridge, report.factTypes);
  bridge.destroy();
  pyodide.runPython("import gc; gc.collect()");
  const body = pyodide.makeMemorySnapshot();
  const sha = manifest.assets.stdlib.sha256;
  if (!/^[0-9a-f]{64}$/.test(sha ?? "")) throw new Error("the manifest has no sha256 for the stdlib zip");
  const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  new TextEncoder().encodeInto(`REVUSNP1${sha}`, header);
  const fd = fs.openSync(args.out, "w");
  fs.writeSync(fd, header);
  fs.writeSync(fd, body);
  fs.closeSync(fd);
  if (blocked.length) throw new Error(`the core tried the network: ${blocked.join(", ")}`);
  console.log(`snapshot ok: ${(header.length + body.length).toLocaleString("en")} bytes`);
}

const COMMANDS = { trace, verify, snapshot };

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const run = COMMANDS[args.command];
  if (!run) throw new Error(`usage: core_build.mjs ${Object.keys(COMMANDS).join("|")} [--options]`);
  await run(args);
  // Pyodide leaves handles open (its event loop); the work is done.
  process.exit(0);
}

main().catch((e) => {
  console.error(`core_build: FAILED: ${e?.stack ?? e}`);
  process.exit(1);
});
