// Precompressed copies for static serving: FILE.br (brotli, quality 11, 16 MiB window)
// and FILE.gz (gzip -9) next to each FILE, kept only when smaller than FILE.
//
//   node scripts/compress_assets.mjs [--cache DIR] FILE...
//
// Brotli at quality 11 takes about 40 s for pyodide.asm.wasm on this machine, so results
// are cached in DIR by the sha256 of the input (the wasm only changes with Pyodide);
// entries no build has used for 14 days are deleted.
// Node's zlib is the reference brotli and zlib libraries: no extra package is needed.
// Files are compressed in parallel (libuv thread pool). Prints one JSON line per file:
// {"file", "bytes", "br", "gz"} (null when that copy was not kept).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";

const brotli = promisify(zlib.brotliCompress);
const gzip = promisify(zlib.gzip);
const VERSION = "br11w24-gz9"; // part of the cache key: change it when the settings change

const CACHE_DAYS = 14; // entries no build used for this long are deleted

async function cached(cacheDir, key, make) {
  const file = cacheDir ? path.join(cacheDir, key) : null;
  if (file && fs.existsSync(file)) {
    const now = new Date();
    fs.utimesSync(file, now, now); // used: keep it
    return fs.readFileSync(file);
  }
  const data = await make();
  if (file) {
    fs.writeFileSync(`${file}.tmp`, data);
    fs.renameSync(`${file}.tmp`, file);
  }
  return data;
}

async function compressOne(file, cacheDir) {
  const data = fs.readFileSync(file);
  const sha = crypto.createHash("sha256").update(data).digest("hex");
  const [br, gz] = await Promise.all([
    cached(cacheDir, `${sha}.${VERSION}.br`, () => brotli(data, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
        [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
      },
    })),
    cached(cacheDir, `${sha}.${VERSION}.gz`, () => gzip(data, { level: 9 })),
  ]);
  const out = { file, bytes: data.length, br: null, gz: null };
  for (const [ext, blob] of [["br", br], ["gz", gz]]) {
    const target = `${file}.${ext}`;
    fs.rmSync(target, { force: true });
    if (blob.length < data.length) {
      fs.writeFileSync(target, blob);
      out[ext] = blob.length;
    }
  }
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  let cacheDir = null;
  if (args[0] === "--cache") {
    cacheDir = args[1];
    args.splice(0, 2);
    fs.mkdirSync(cacheDir, { recursive: true });
  }
  if (!args.length) throw new Error("usage: compress_assets.mjs [--cache DIR] FILE...");
  const results = await Promise.all(args.map((f) => compressOne(f, cacheDir)));
  for (const r of results) console.log(JSON.stringify(r));
  if (cacheDir) {
    const cutoff = Date.now() - CACHE_DAYS * 24 * 3600 * 1000;
    for (const name of fs.readdirSync(cacheDir)) {
      const file = path.join(cacheDir, name);
      if (fs.statSync(file).mtimeMs < cutoff) fs.rmSync(file, { force: true });
    }
  }
}

main().catch((e) => {
  console.error(`compress_assets: FAILED: ${e?.stack ?? e}`);
  process.exit(1);
});
