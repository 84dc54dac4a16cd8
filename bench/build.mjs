// Bench build step (run by bench/run.py, not committed output):
//   1. bundle each SDK's bench adapter (bench/sdks/<name>.js) with esbuild into
//      build/bench/sdk/<name>.js: one minified classic script per SDK, the way
//      a site would bundle the package from npm (its default entry);
//   2. precompress every servable text/JS/JSON/wasm file of dist/ and of the
//      bundles into build/bench/compressed/<route>/<path>.{br,gz} (brotli
//      quality 11, gzip level 9), unless it is up to date;
//   3. write build/bench/versions.json (the installed peers' versions).
//
// Usage: node bench/build.mjs <repo root>
import { build } from "esbuild";
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import crypto from "node:crypto";

const root = path.resolve(process.argv[2] || ".");
const out = path.join(root, "build", "bench");
const require = createRequire(path.join(root, "package.json"));
const ADAPTERS = ["revu", "posthog", "segment", "amplitude", "mixpanel"];
const PEERS = { posthog: "posthog-js", segment: "@segment/analytics-next", amplitude: "@amplitude/analytics-browser", mixpanel: "mixpanel-browser" };
// Kept in step with COMPRESSIBLE_SUFFIXES in bench/assets.py.
const COMPRESSIBLE = new Set([".html", ".js", ".mjs", ".json", ".wasm", ".css", ".txt", ".svg", ".tar"]);

const t0 = Date.now();
fs.mkdirSync(path.join(out, "sdk"), { recursive: true });
const result = await build({
  entryPoints: Object.fromEntries(ADAPTERS.map((n) => [n, path.join(root, "bench", "sdks", `${n}.js`)])),
  outdir: path.join(out, "sdk"),
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "none",
  metafile: true,
  write: false,
  logLevel: "warning",
  absWorkingDir: root,
});
const bundles = {};
for (const file of result.outputFiles) {
  bundles[path.basename(file.path)] = file.contents.length;
  // Rewrite only what changed, so the precompressed copies stay valid.
  if (!fs.existsSync(file.path) || !fs.readFileSync(file.path).equals(Buffer.from(file.contents))) {
    fs.writeFileSync(file.path, file.contents);
  }
}

function* walk(dir) {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

let compressed = 0;
for (const [route, dir] of [["revu", path.join(root, "dist")], ["sdk", path.join(out, "sdk")]]) {
  for (const file of walk(dir)) {
    const ext = path.extname(file).toLowerCase();
    if (!COMPRESSIBLE.has(ext)) continue;
    const rel = path.relative(dir, file);
    const data = fs.readFileSync(file);
    // Keyed by content, not mtime: a rebuilt but unchanged dist/ is not compressed again.
    const sha = crypto.createHash("sha256").update(data).digest("hex");
    for (const [suffix, fn] of [
      [".br", () => zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length } })],
      [".gz", () => zlib.gzipSync(data, { level: 9 })],
    ]) {
      const dest = path.join(out, "compressed", route, rel + suffix);
      const stamp = dest + ".src-sha256";
      if (fs.existsSync(dest) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === sha) continue;
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.writeFileSync(dest, fn());
      fs.writeFileSync(stamp, sha);
      compressed++;
    }
  }
}

const versions = {};
for (const [name, pkg] of Object.entries(PEERS)) {
  versions[name] = { package: pkg, version: require(`${pkg}/package.json`).version };
}
versions.esbuild = { package: "esbuild", version: require("esbuild/package.json").version };
fs.writeFileSync(path.join(out, "versions.json"), JSON.stringify({ versions, bundles }, null, 2));
console.log(`[bench build] bundles ${JSON.stringify(bundles)}; ${compressed} compressed copies written; ${Date.now() - t0} ms`);
