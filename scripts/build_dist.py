#!/usr/bin/env python3
"""Build the self-hosted SDK bundle (dist/) and the Pyodide test distribution.

Outputs:

  dist/revu.js (+ .map)            js_shim/index.js bundled by esbuild as one IIFE classic script,
                                   with the asset manifest inlined (esbuild --define), so it
                                   fetches nothing to find its assets. Stable name: pages
                                   reference it; serve it with a short cache or revalidation.
  dist/assets/                     content-hashed, immutable: Pyodide's loader (two checked
                                   patches, see PYODIDE_LOADER_PATCHES), its asm module and wasm,
                                   the trimmed, precompiled stdlib zip (Pyodide's stdlib modules
                                   the core imports + the revu package, as .pyc, stored
                                   uncompressed) and, when made, the memory snapshot
  dist/manifest.json               the same manifest, for servers and tools (revu.js does not read it)
  dist/**.br, dist/**.gz           precompressed copies of every file but the wheel
  dist/revu-<v>-py3-none-any.whl   the revu wheel, for Python users who micropip it (the ONLY
                                   *.whl directly in dist/: pytest-pyodide --run-in-pyodide
                                   installs every dist/*.whl); revu.js does not load it
  build/pyodide-test-dist/         pytest-pyodide's --dist-dir: Pyodide core + micropip, pytest,
                                   hypothesis (+ deps), tblib and revu, all listed in its lock

The trimmed stdlib is traced, compiled and checked by scripts/core_build.mjs (see there):
the build fails if the core, loaded from dist/ alone through js_shim/core/load_core.js,
answers a workout of every fact type differently from the core on the full stdlib.

Nothing is fetched at run time from anywhere but the folder the files are served from.
Stdlib only; run with any python3 >= 3.9. Building the wheel and downloading the test wheels
use a Python that has pip (and setuptools): $REVU_PYTHON, else .venv/bin/python, else this one.

Environment knobs (for partial builds while the shim is being written):
  REVU_SHIM_ENTRY=path   bundle this entry instead of js_shim/index.js
  REVU_SKIP_SHIM=1       build everything but dist/revu.js
  REVU_SNAPSHOT=0|1      override SNAPSHOT_DEFAULT (make the memory snapshot or not)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# --------------------------------------------------------------------------------------
# Pins. Every file we ship is listed here; bump a version and its sha256 together.
# --------------------------------------------------------------------------------------

PYODIDE_NPM_VERSION = "314.0.7"  # must equal package.json "dependencies.pyodide"
PYODIDE_PYTHON = "3.14"  # the CPython inside that Pyodide; wheels are downloaded for it
ESBUILD_TARGET = "es2020"

# Pyodide core files, copied from node_modules/pyodide. pyodide.js is the CommonJS
# entry (pytest-pyodide's node driver require()s it), pyodide.mjs the ES module one
# (revu.js and pytest-pyodide's module_test.html import it). Type declarations,
# source maps and the console pages are not needed.
PYODIDE_CORE_FILES = [
    "pyodide.js",
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
]

# Pure-Python wheels for build/pyodide-test-dist, downloaded from PyPI for Python 3.14.
# (name, version, sha256 of the PyPI file, import names, lock "depends")
# The sha256 values are PyPI's files, which differ from those in Pyodide's own lock
# (Pyodide repackages its wheels), so the lock we write always uses these.
TEST_WHEELS = [
    ("micropip", "0.11.1", "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3", ["micropip"], []),
    # hypothesis is listed among pytest's depends on purpose: pytest-pyodide's
    # --run-in-pyodide mode loads packages only through
    # pyodide.loadPackagesFromImports("import pytest ..."), so a test module's own
    # `import hypothesis` would fail with ModuleNotFoundError. Making hypothesis a
    # dependency of pytest in OUR test lock loads it whenever pytest is loaded.
    ("pytest", "8.4.2", "872f880de3fc3a5bdc88a11b39c9710c3497a547cfa9320bc3c5e62fbf272e79", ["_pytest", "pytest"],
     ["iniconfig", "packaging", "pluggy", "pygments", "hypothesis"]),
    ("pluggy", "1.6.0", "e920276dd6813095e9377c0bc5566d94c932c33b27a3e3945d8389c374dd4746", ["pluggy"], []),
    ("iniconfig", "2.3.0", "f631c04d2c48c52b84d0d0549c99ff3859c98df65b3101406327ecc7d53fbf12", ["iniconfig"], []),
    ("packaging", "26.1", "5d9c0669c6285e491e0ced2eee587eaf67b670d94a19e94e3984a481aba6802f", ["packaging"], []),
    ("pygments", "2.20.0", "81a9e26dd42fd28a23a2d169d86d7ac03b46e2f8b59ed4698fb4785f946d0176", ["pygments"], []),
    # 6.155.7 is the last hypothesis release with a pure py3-none-any wheel; later
    # ones ship only compiled CPython wheels. It needs only sortedcontainers (no attrs).
    ("hypothesis", "6.155.7", "9f634bdb1f9e9b8ab6ba09431cf2deedb750c96978125a6fb3c5a0f6c6db4131", ["hypothesis"],
     ["sortedcontainers"]),
    ("sortedcontainers", "2.4.0", "a163dcaede0f1c021485e957a39245190e74249897e2ae4b2aa38595db237ee0",
     ["sortedcontainers"], []),
    # Optional for pytest-pyodide: when tblib is in the lock, @run_in_pyodide loads it and
    # sends real tracebacks back to the host.
    ("tblib", "3.2.2", "26bdccf339bcce6a88b2b5432c988b266ebbe63a4e593f6b578b1d2e723d2b76", ["tblib"], []),
]

# The trimmed stdlib: .pyc compiled with optimize=2 (no docstrings, no asserts), which
# brings the zip from 3.6 to 2.9 MB (1.04 to 0.85 MB with brotli). The build's smoke check
# runs the core from it and compares every answer with the core on the full stdlib.
STDLIB_OPTIMIZE = 2

# Two patches to Pyodide's loader (pyodide.mjs), so that js_shim/core/load_core.js makes
# every request itself (timeouts, status and type checks, one clear error per asset).
# Each must match exactly once, or the build stops: re-derive them after a Pyodide upgrade
# (the unminified source is in node_modules/pyodide/pyodide.mjs.map).
PYODIDE_LOADER_PATCHES = [
    (
        "never fetch pyodide.asm.wasm (getInstantiateWasmFunc returns nothing; load_core.js "
        "sets instantiateWasm with the module it compiled)",
        r'if\(typeof WasmOffsetConverter<"u"\)return;',
        "return;",
    ),
    (
        "installStdlib accepts the stdlib zip's bytes (or a promise of them) instead of a URL",
        r"function (\w+)\((\w+)\)\{let (\w+)=(\w+)\(\2\);(return async (\w+)=>\{\6\.API\.pyVersionTuple=)",
        r'function \1(\2){let \3=typeof \2=="string"?\4(\2):Promise.resolve(\2);\5',
    ),
]

# The memory snapshot (Pyodide's undocumented _makeSnapshot / _loadSnapshot): see
# docs/serving.md "Memory snapshot" for the measurements behind this default.
SNAPSHOT_DEFAULT = False

# --------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
BUILD = ROOT / "build"
WHEEL_CACHE = BUILD / "wheels"
TEST_DIST = BUILD / "pyodide-test-dist"
NODE_PYODIDE = ROOT / "node_modules" / "pyodide"
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
SMOKE = ROOT / "scripts" / "smoke_pyodide.mjs"
CORE_BUILD = ROOT / "scripts" / "core_build.mjs"
COMPRESS = ROOT / "scripts" / "compress_assets.mjs"
CORE_DIR = BUILD / "core"
COMPRESS_CACHE = BUILD / "compress-cache"
HASH_CHARS = 16  # of the sha256 hex digest, in asset names


class BuildError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], what: str, cwd: Path = ROOT, quiet: bool = False) -> None:
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, text=True,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
    except FileNotFoundError as e:
        raise BuildError(f"{what}: cannot run {cmd[0]} ({e})") from None
    if proc.returncode != 0:
        out = (proc.stdout or "").strip()
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}"
                         + (f"\n{out}" if out else ""))


def tool_python() -> str:
    """The interpreter used for pip (wheel build, downloads)."""
    env = os.environ.get("REVU_PYTHON")
    if env:
        return env
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # 3.11+
        return tomllib.loads(text)["project"]["version"]
    except ImportError:
        m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', text)
        if not m:
            raise BuildError("cannot find [project] version in pyproject.toml") from None
        return m.group(1)


# ---------------------------------------------------------------- checks -------------

def check_node_modules() -> None:
    pkg = NODE_PYODIDE / "package.json"
    if not pkg.exists():
        raise BuildError("node_modules/pyodide is missing: run `npm ci` (or ./dev setup) first")
    version = json.loads(pkg.read_text())["version"]
    if version != PYODIDE_NPM_VERSION:
        raise BuildError(f"node_modules/pyodide is {version}, expected {PYODIDE_NPM_VERSION}: run `npm ci`")
    missing = [f for f in PYODIDE_CORE_FILES + ["pyodide-lock.json"] if not (NODE_PYODIDE / f).exists()]
    if missing:
        raise BuildError(f"node_modules/pyodide lacks {missing}: reinstall with `npm ci`")
    if not ESBUILD.exists():
        raise BuildError("node_modules/.bin/esbuild is missing: run `npm ci` (or ./dev setup) first")


# ---------------------------------------------------------------- steps --------------

def bundle_shim(out_dir: Path, manifest: dict) -> list[Path]:
    if os.environ.get("REVU_SKIP_SHIM") == "1":
        log("REVU_SKIP_SHIM=1: NOT building dist/revu.js")
        return []
    entry = Path(os.environ.get("REVU_SHIM_ENTRY") or ROOT / "js_shim" / "index.js").resolve()
    if not entry.exists():
        raise BuildError(
            f"shim entry {entry} does not exist. dist/revu.js is bundled from js_shim/index.js "
            "(set REVU_SHIM_ENTRY=<file> to bundle another entry, or REVU_SKIP_SHIM=1 to build the rest)")
    out = out_dir / "revu.js"
    run([ESBUILD, entry, "--bundle", "--format=iife", "--minify", f"--target={ESBUILD_TARGET}",
         "--sourcemap", "--log-level=warning", *manifest_define(manifest), f"--outfile={out}"],
        "esbuild bundle of the JS shim")
    # The copy-paste snippet (README), minified; the e2e tests run this very file.
    snippet = out_dir / "snippet.min.js"
    run([ESBUILD, ROOT / "js_shim" / "snippet.js", "--minify", f"--target={ESBUILD_TARGET}", "--log-level=warning",
         f"--outfile={snippet}"], "esbuild minify of the snippet")
    return [out, out.with_name("revu.js.map"), snippet]


def bundle_worker(out_dir: Path) -> dict:
    """The core's Worker (js_shim/core_host/worker.js, a module script: it imports
    Pyodide's ES module loader), content-hashed under assets/. revu.js finds it
    through the manifest's "worker" entry and hands it the manifest when it
    starts, so the Worker itself does not inline it."""
    with tempfile.TemporaryDirectory(prefix="revu-worker-") as tmp:
        out = Path(tmp) / "worker.js"
        run([ESBUILD, ROOT / "js_shim" / "core_host" / "worker.js", "--bundle", "--format=esm", "--minify",
             f"--target={ESBUILD_TARGET}", "--log-level=warning", f"--outfile={out}"],
            "esbuild bundle of the core's Worker")
        return put_hashed(out_dir / "assets", "revu-worker", ".js", out.read_bytes())


def manifest_define(manifest: dict) -> list[str]:
    """esbuild arguments that inline the asset manifest as __REVU_MANIFEST__ (js_shim/bridge.js).
    A bundle of the core's Worker needs the same."""
    return [f"--define:__REVU_MANIFEST__={json.dumps(manifest, sort_keys=True, separators=(',', ':'))}"]


def build_revu_wheel(version: str, out_dir: Path) -> Path:
    """Build the wheel from a clean copy of the sources, so stale build/lib or
    egg-info folders can never leak deleted modules into it."""
    py = tool_python()
    with tempfile.TemporaryDirectory(prefix="revu-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy2(ROOT / "pyproject.toml", src)
        for extra in ("README.md", "LICENSE", "LICENSE.txt", "MANIFEST.in"):
            if (ROOT / extra).exists():
                shutil.copy2(ROOT / extra, src)
        readme = re.search(r'(?m)^readme\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())
        if readme and not (src / readme.group(1)).exists():
            log(f"WARNING: {readme.group(1)} (pyproject readme) is missing; using a stub in the wheel metadata")
            (src / readme.group(1)).write_text("revu\n")
        if not (ROOT / "py_src" / "revu" / "__init__.py").exists():
            raise BuildError("py_src/revu/__init__.py is missing: nothing to build")
        shutil.copytree(ROOT / "py_src", src / "py_src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        wheel_dir = Path(tmp) / "wheel"
        cmd = [py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
               "-q", "-w", wheel_dir, src]
        probe = subprocess.run([py, "-c", "import setuptools, wheel"], capture_output=True)
        if probe.returncode != 0:
            # No local setuptools/wheel: let pip fetch the build backend from PyPI.
            cmd.remove("--no-build-isolation")
        run(cmd, f"building the revu wheel with {py}", quiet=True)
        wheels = list(wheel_dir.glob("*.whl"))
        expected = f"revu-{version}-py3-none-any.whl"
        if [w.name for w in wheels] != [expected]:
            raise BuildError(f"expected exactly {expected}, pip produced {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheels[0]) as z:
            if "revu/__init__.py" not in z.namelist():
                raise BuildError(f"{expected} does not contain revu/__init__.py: check pyproject's package-dir")
            # The browser loads this wheel: only the core, never the ingest
            # service (ingest/, its own distribution) or anything else.
            tops = {name.split("/", 1)[0] for name in z.namelist()}
            stray = sorted(t for t in tops if t != "revu" and not (t.startswith("revu-") and t.endswith(".dist-info")))
            if stray:
                raise BuildError(f"{expected} must contain only the revu core; it also has {stray}")
        out = out_dir / expected
        shutil.copy2(wheels[0], out)
        return out


def fetch_test_wheels() -> list[tuple[Path, tuple]]:
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    py = tool_python()
    result = []
    for pin in TEST_WHEELS:
        name, version, sha, _imports, _depends = pin
        found = [p for p in WHEEL_CACHE.glob("*.whl")
                 if _wheel_name_version(p) == (_norm(name), version)]
        if not found:
            log(f"downloading {name}=={version} from PyPI")
            run([py, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--python-version", PYODIDE_PYTHON, "--platform", "any", "--implementation", "py",
                 "-q", "-d", WHEEL_CACHE, f"{name}=={version}"],
                f"pip download {name}=={version}", quiet=True)
            found = [p for p in WHEEL_CACHE.glob("*.whl")
                     if _wheel_name_version(p) == (_norm(name), version)]
        if len(found) != 1:
            raise BuildError(f"expected one wheel for {name}=={version} in {WHEEL_CACHE}, found {found}")
        actual = sha256_of(found[0])
        if actual != sha:
            raise BuildError(f"{found[0].name}: sha256 {actual} != pinned {sha} "
                             f"(delete it from {WHEEL_CACHE} to re-download, or update the pin)")
        result.append((found[0], pin))
    return result


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel_name_version(path: Path) -> tuple[str, str]:
    parts = path.name.split("-")
    return (_norm(parts[0]), parts[1]) if len(parts) >= 5 else ("", "")


def lock_entry(name: str, version: str, wheel: Path, imports: list[str], depends: list[str]) -> dict:
    return {
        "name": name,
        "version": version,
        "file_name": wheel.name,
        "install_dir": "site",
        "sha256": sha256_of(wheel),
        "package_type": "package",
        "imports": imports,
        "depends": depends,
        "unvendored_tests": False,
    }


def write_pyodide_dir(target: Path, packages: dict[str, tuple[Path, dict]]) -> None:
    """Pyodide core + the given wheels + a lock listing exactly those wheels."""
    target.mkdir(parents=True, exist_ok=True)
    for f in PYODIDE_CORE_FILES:
        shutil.copy2(NODE_PYODIDE / f, target / f)
    upstream = json.loads((NODE_PYODIDE / "pyodide-lock.json").read_text())
    lock = {"info": upstream["info"], "packages": {}}
    if "tool" in upstream:
        lock["tool"] = upstream["tool"]
    for key, (wheel, entry) in sorted(packages.items()):
        shutil.copy2(wheel, target / wheel.name)
        lock["packages"][key] = entry
    (target / "pyodide-lock.json").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    verify_lock(target)


def verify_lock(target: Path) -> None:
    lock = json.loads((target / "pyodide-lock.json").read_text())
    pkgs = lock["packages"]
    for key, entry in pkgs.items():
        f = target / entry["file_name"]
        if not f.exists():
            raise BuildError(f"{target}/pyodide-lock.json lists {entry['file_name']} which is not shipped")
        if sha256_of(f) != entry["sha256"]:
            raise BuildError(f"{f}: sha256 does not match its lock entry")
        for dep in entry["depends"]:
            if dep not in pkgs:
                raise BuildError(f"lock entry {key} depends on {dep}, which is not in the lock")
    listed = {e["file_name"] for e in pkgs.values()}
    stray = [p.name for p in target.glob("*.whl") if p.name not in listed]
    if stray:
        raise BuildError(f"{target} holds wheels not in its lock: {stray}")


# ---------------------------------------------------------------- the core's assets --

def node() -> str:
    found = shutil.which("node")
    if not found:
        raise BuildError("node is not on PATH (needed to trace, check and compress the core)")
    return found


def patch_loader(text: str) -> str:
    """Apply PYODIDE_LOADER_PATCHES to pyodide.mjs; each must match exactly once."""
    for why, pattern, replacement in PYODIDE_LOADER_PATCHES:
        text, count = re.subn(pattern, replacement, text)
        if count != 1:
            raise BuildError(f"pyodide.mjs patch '{why}' matched {count} times instead of once: "
                             "re-derive PYODIDE_LOADER_PATCHES for this Pyodide version")
    return text


def strip_source_map(text: str) -> str:
    """The maps are not shipped; without this a browser with devtools open asks for them."""
    return re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", text)


def put_hashed(assets_dir: Path, stem: str, ext: str, data: bytes) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    name = f"{stem}.{sha[:HASH_CHARS]}{ext}"
    (assets_dir / name).write_bytes(data)
    return {"path": f"{assets_dir.name}/{name}", "bytes": len(data), "sha256": sha}


def trace_core() -> tuple[Path, dict]:
    """Trace, compile and zip the core's stdlib (scripts/core_build.mjs trace)."""
    CORE_DIR.mkdir(parents=True, exist_ok=True)
    zip_path, report_path = CORE_DIR / "python_stdlib.zip", CORE_DIR / "trace.json"
    run([node(), CORE_BUILD, "trace", "--pyodide", NODE_PYODIDE, "--src", ROOT / "py_src",
         "--zip", zip_path, "--report", report_path, "--optimize", str(STDLIB_OPTIMIZE)],
        "tracing the core's stdlib in Pyodide")
    return zip_path, json.loads(report_path.read_text())


def core_manifest(assets: dict) -> dict:
    upstream = json.loads((NODE_PYODIDE / "pyodide-lock.json").read_text())
    return {
        "version": 1,
        "pyodide": PYODIDE_NPM_VERSION,
        "assets": assets,
        # Inline lock: no request for it. No packages: revu is in the stdlib zip.
        "lock": {"info": upstream["info"], "packages": {}},
    }


def write_core_assets(stage: Path, want_snapshot: bool) -> dict:
    """dist/assets/: hashed copies of what load_core.js loads, checked end to end. Returns the manifest."""
    zip_path, _report = trace_core()
    assets_dir = stage / "assets"
    assets_dir.mkdir()
    loader = patch_loader(strip_source_map((NODE_PYODIDE / "pyodide.mjs").read_text(encoding="utf-8")))
    asm = strip_source_map((NODE_PYODIDE / "pyodide.asm.mjs").read_text(encoding="utf-8"))
    assets = {
        "loader": put_hashed(assets_dir, "pyodide", ".mjs", loader.encode("utf-8")),
        "asm": put_hashed(assets_dir, "pyodide.asm", ".mjs", asm.encode("utf-8")),
        "wasm": put_hashed(assets_dir, "pyodide.asm", ".wasm", (NODE_PYODIDE / "pyodide.asm.wasm").read_bytes()),
        "stdlib": put_hashed(assets_dir, "python_stdlib", ".zip", zip_path.read_bytes()),
    }
    manifest_path = CORE_DIR / "manifest.json"
    manifest_path.write_text(json.dumps(core_manifest(assets), indent=1, sort_keys=True) + "\n")
    check = [node(), CORE_BUILD, "verify", "--dist", stage, "--manifest", manifest_path,
             "--report", CORE_DIR / "trace.json"]
    run(check, "smoke check of the trimmed core (dist/ alone, no snapshot)")
    if want_snapshot:
        raw = CORE_DIR / "snapshot.bin"
        run([node(), CORE_BUILD, "snapshot", "--dist", stage, "--manifest", manifest_path,
             "--report", CORE_DIR / "trace.json", "--out", raw], "making the memory snapshot")
        assets["snapshot"] = put_hashed(assets_dir, "revu_core", ".snapshot", raw.read_bytes())
        assets["snapshot"]["stdlibSha256"] = assets["stdlib"]["sha256"]
        manifest_path.write_text(json.dumps(core_manifest(assets), indent=1, sort_keys=True) + "\n")
        run(check, "smoke check of the trimmed core with its memory snapshot")
    return core_manifest(assets)


def compress_all(root: Path) -> dict[str, dict]:
    """FILE.br and FILE.gz beside every file but the wheel (scripts/compress_assets.mjs)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in (".whl", ".br", ".gz"))
    proc = subprocess.run([node(), COMPRESS, "--cache", COMPRESS_CACHE, *files], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise BuildError(f"compressing dist/ failed:\n{proc.stderr.strip()}")
    out = {}
    for line in proc.stdout.splitlines():
        entry = json.loads(line)
        out[Path(entry["file"]).relative_to(root).as_posix()] = entry
    return out


def replace_dir(staged: Path, final: Path) -> None:
    """Swap a fully built folder into place, so a failed build never leaves half a dist."""
    trash = final.with_name(final.name + ".old")
    if trash.exists():
        shutil.rmtree(trash)
    if final.exists():
        final.rename(trash)
    staged.rename(final)
    if trash.exists():
        shutil.rmtree(trash)


def smoke(index_dir: Path, load: list[str], imports: list[str]) -> None:
    node = shutil.which("node")
    if not node:
        raise BuildError("node is not on PATH (needed for the Pyodide smoke check)")
    run([node, SMOKE, "--index", index_dir, "--load", ",".join(load), "--import", ",".join(imports)],
        f"Pyodide smoke check of {index_dir.relative_to(ROOT)}")


def summary(paths: list[Path]) -> None:
    total = 0
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            size = p.stat().st_size
            total += size
            print(f"  {size:>12,}  {os.path.relpath(p, ROOT)}")
    print(f"  {total:>12,}  total")


def dist_summary(compressed: dict[str, dict], manifest: dict) -> None:
    """What a browser transfers: every file revu.js loads, raw / gzip / brotli."""
    loaded = ["revu.js", manifest["worker"]["path"]] + [a["path"] for a in manifest["assets"].values()]
    print("what a cold start transfers (bytes: raw, gzip, brotli):")
    totals = [0, 0, 0]
    for rel in loaded:
        e = compressed[rel]
        row = [e["bytes"], e["gz"] or e["bytes"], e["br"] or e["bytes"]]
        totals = [t + r for t, r in zip(totals, row)]
        print(f"  {row[0]:>12,} {row[1]:>12,} {row[2]:>12,}  {rel}")
    print(f"  {totals[0]:>12,} {totals[1]:>12,} {totals[2]:>12,}  total")


# ---------------------------------------------------------------- main ---------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-smoke", action="store_true", help="skip the Node smoke check of build/pyodide-test-dist "
                    "(the trimmed core is always checked)")
    ap.add_argument("--no-test-dist", action="store_true", help="do not (re)build build/pyodide-test-dist")
    snap = ap.add_mutually_exclusive_group()
    snap.add_argument("--snapshot", dest="snapshot", action="store_true", default=None, help="make the memory snapshot")
    snap.add_argument("--no-snapshot", dest="snapshot", action="store_false", help="do not make the memory snapshot")
    ap.add_argument("--dist-dir", type=Path, default=DIST,
                    help="where to put dist/ (default: dist/; bench/startup.py builds variants elsewhere)")
    args = ap.parse_args()
    dist_dir = args.dist_dir.resolve()
    want_snapshot = args.snapshot
    if want_snapshot is None:
        env = os.environ.get("REVU_SNAPSHOT")
        want_snapshot = SNAPSHOT_DEFAULT if env in (None, "") else env == "1"

    check_node_modules()
    version = project_version()
    BUILD.mkdir(exist_ok=True)

    # 1. dist/ (staged next to the final folder, swapped in at the end)
    if ROOT not in dist_dir.parents:
        # Node resolves pyodide.mjs's import("ws") from the staged assets: they must sit under ROOT.
        raise BuildError(f"--dist-dir must be inside {ROOT}")
    # Same file system as the final folder, so the final swap is a rename.
    stage = BUILD / "dist.staging" if dist_dir == DIST else dist_dir.with_name(dist_dir.name + ".staging")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    wheel = build_revu_wheel(version, stage)
    log(f"built {wheel.name} ({wheel.stat().st_size:,} bytes)")
    manifest = write_core_assets(stage, want_snapshot)
    manifest["worker"] = bundle_worker(stage)
    bundle_shim(stage, manifest)
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if len(list(stage.glob("*.whl"))) != 1:
        raise BuildError("dist/ must hold exactly one *.whl")
    compressed = compress_all(stage)

    # 2. build/pyodide-test-dist/
    if not args.no_test_dist:
        tstage = BUILD / "pyodide-test-dist.staging"
        if tstage.exists():
            shutil.rmtree(tstage)
        revu_entry = lock_entry("revu", version, wheel, ["revu"], [])
        packages = {"revu": (wheel, revu_entry)}
        for path, (name, version_, _sha, imports, depends) in fetch_test_wheels():
            packages[name] = (path, lock_entry(name, version_, path, imports, depends))
        write_pyodide_dir(tstage, packages)
        if not args.no_smoke:
            smoke(tstage, ["micropip", "pytest", "tblib", "revu"], ["micropip", "pytest", "hypothesis", "tblib", "revu"])

    dist_dir.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(stage, dist_dir)
    if not args.no_test_dist:
        replace_dir(tstage, TEST_DIST)

    print("revu build:")
    summary([dist_dir] + ([TEST_DIST] if not args.no_test_dist else []))
    if "revu.js" in compressed:
        dist_summary(compressed, manifest)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"\nbuild_dist.py: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
