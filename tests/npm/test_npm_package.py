"""The npm package as a user gets it: `npm pack`, installed from the tarball
into a scratch project (no registry), bundled by esbuild, its dist/ copied out
of node_modules and served, run in Chromium against the reference ingest
server on another origin; and its declarations checked by tsc.

Needs the built dist/ (./dev build) and the repo's node_modules (esbuild,
typescript). See docs/npm.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
TSC = ROOT / "node_modules" / ".bin" / "tsc"
CHROMIUM = os.environ.get("REVU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# What the tarball may hold: the built dist/ (no wheel), the declarations, the docs npm adds.
ALLOWED_TOP = {"package.json", "README.md", "LICENSE", "CHANGELOG.md"}
ALLOWED_PREFIXES = ("dist/", "types/")

TSCONFIG = {
    "compilerOptions": {
        "strict": True, "noEmit": True, "target": "es2022", "module": "esnext",
        "moduleResolution": "bundler", "lib": ["es2020", "dom"], "types": [], "skipLibCheck": False,
    },
}
TS_BLOCK = re.compile(r"^```ts\n(.*?)^```", re.S | re.M)

APP = """
import { revu } from "revu";
const params = new URLSearchParams(location.search);
window.__app = { revu, globalRevu: window.revu, errors: [] };
revu.on("error", (e) => window.__app.errors.push(e.code + ": " + e.message));
const assetsUrl = params.get("assets");
// tabs: false (every tab its own core) is a shim-only option the core must accept.
revu.init({ apiKey: "npm-test", host: params.get("ingest"), tabs: false, ...(assetsUrl ? { assetsUrl } : {}) });
"""


def run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, text=True, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(tarball, [paths in it]) from `npm pack` of the working tree."""
    if not (ROOT / "dist" / "revu.mjs").is_file():
        pytest.fail("dist/revu.mjs is missing: run ./dev build first")
    out = tmp_path_factory.mktemp("pack")
    proc = run(["npm", "pack", "--json", "--pack-destination", out], ROOT)
    info = json.loads(proc.stdout)[0]
    return out / info["filename"], sorted(f["path"] for f in info["files"]), info


@pytest.fixture(scope="module")
def installed(packed, tmp_path_factory):
    """A scratch project with the tarball installed (offline: it has no dependencies)."""
    tarball, _files, _info = packed
    app = tmp_path_factory.mktemp("app")
    (app / "package.json").write_text(json.dumps(
        {"name": "revu-npm-test-app", "private": True, "dependencies": {"revu": f"file:{tarball}"}}))
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts"], app)
    assert (app / "node_modules" / "revu" / "dist" / "revu.mjs").is_file()
    return app


def test_tarball_holds_exactly_what_ships(packed):
    tarball, files, info = packed
    stray = [f for f in files if f not in ALLOWED_TOP and not f.startswith(ALLOWED_PREFIXES)]
    assert not stray, f"the package would ship {stray}"
    assert not [f for f in files if f.endswith(".whl")]
    manifest = json.loads((ROOT / "dist" / "manifest.json").read_text())
    needed = {"dist/revu.js", "dist/revu.mjs", "dist/snippet.min.js", "dist/manifest.json",
              "types/revu.d.ts", "README.md", "LICENSE", "CHANGELOG.md", "package.json",
              "dist/" + manifest["worker"]["path"]}
    needed |= {"dist/" + a["path"] for a in manifest["assets"].values()}
    assert needed <= set(files), sorted(needed - set(files))
    # Every file of the built dist/ but the wheel ships (compressed copies included).
    built = {"dist/" + p.relative_to(ROOT / "dist").as_posix() for p in (ROOT / "dist").rglob("*")
             if p.is_file() and p.suffix != ".whl"}
    assert built == {f for f in files if f.startswith("dist/")}
    print(f"\nnpm package: {len(files)} files, {info['size']:,} bytes packed, {info['unpackedSize']:,} unpacked")


def test_package_json_entries_resolve(installed):
    pkg = json.loads((installed / "node_modules" / "revu" / "package.json").read_text())
    assert "private" not in pkg
    assert "dependencies" not in pkg, "dist/ bundles everything it loads"
    for target in [pkg["types"], pkg["main"], *[v if isinstance(v, str) else v["import"]
                                                 for k, v in pkg["exports"].items() if "*" not in k]]:
        assert (installed / "node_modules" / "revu" / target).is_file(), target
    # The ES module exports the same object as its default export, and named types only.
    proc = run(["node", "--input-type=module", "-e",
                "import { revu } from 'revu'; import d from 'revu'; "
                "console.log(JSON.stringify({same: d === revu, version: revu.version, "
                "api: Object.keys(revu).sort()}))"], installed)
    out = json.loads(proc.stdout)
    assert out["same"] is True and out["version"] == pkg["version"]
    assert set(out["api"]) >= {"init", "record", "flush", "consent", "status", "on", "outbox", "ready", "version"}


def test_example_type_checks(installed, tmp_path):
    """tests/npm/example.ts and every ```ts block of the docs against the
    installed declarations; example.ts's @ts-expect-error lines make tsc fail
    if the declarations grow too loose."""
    shutil.copy(ROOT / "tests" / "npm" / "example.ts", installed / "example.ts")
    files = ["example.ts"]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, block in enumerate(TS_BLOCK.findall(doc.read_text())):
            name = f"doc_{doc.stem}_{n}.ts"
            (installed / name).write_text(block + "\nexport {};\n")
            files.append(name)
    assert any(f.startswith("doc_npm_") for f in files), "docs/npm.md has no ts example"
    (installed / "tsconfig.json").write_text(json.dumps({**TSCONFIG, "files": files}))
    run([TSC, "-p", "tsconfig.json"], installed)
    # And tsc does check: the same file with one mistake un-marked fails, naming it.
    broken = (installed / "example.ts").read_text().replace(
        "// @ts-expect-error: an option name that does not exist\n", "", 1)
    (installed / "example.ts").write_text(broken)
    proc = subprocess.run([str(TSC), "-p", "tsconfig.json"], cwd=installed, text=True, capture_output=True)
    assert proc.returncode != 0 and "flushEvery" in proc.stdout, proc.stdout


def test_bundled_app_delivers_events(installed, tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (installed / "app.js").write_text(APP)
    run([ESBUILD, "app.js", "--bundle", "--format=iife", "--log-level=warning",
         f"--outfile={public / 'app.js'}"], installed)
    # What docs/npm.md tells a bundler user to do: copy the package's dist/ to a public folder.
    shutil.copytree(installed / "node_modules" / "revu" / "dist", public / "revu")
    (public / "index.html").write_text('<!doctype html><title>npm app</title><script src="/app.js"></script>\n')

    from playwright.sync_api import sync_playwright

    ingest = IngestServer(db_path=str(tmp_path / "events.sqlite3")).start()
    site = StaticServer({"/": public}).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{site.url}/index.html?ingest={ingest.url}&assets=/revu/")
                result = page.evaluate("""async () => {
                    const { revu, globalRevu, errors } = window.__app;
                    const ids = [];
                    for (let i = 0; i < 5; i++) ids.push(revu.record("npm_event", { i }));
                    await revu.ready;
                    const flushed = await revu.flush();
                    return { ids, flushed, errors, status: revu.status(), globalRevu: globalRevu === undefined };
                }""")
                assert not errors, errors
                # Without assetsUrl the module cannot find the assets: ready rejects, named.
                other = browser.new_context().new_page()
                other.goto(f"{site.url}/index.html?ingest={ingest.url}")
                missing = other.evaluate("""async () => {
                    const { revu, errors } = window.__app;
                    const id = revu.record("stored_anyway", {});
                    const outcome = await revu.ready.then(() => "resolved", (e) => "rejected: " + e.message);
                    return { id, outcome, errors, queued: revu.status().queued };
                }""")
            finally:
                browser.close()
        assert result["errors"] == [], result["errors"]
        assert result["flushed"] is True, result
        assert result["globalRevu"] is True, "the ES module must not set window.revu"
        ids = result["ids"]
        assert len(ids) == 5 and all(isinstance(i, str) for i in ids)
        state = ingest.wait_until(lambda s: set(ids) <= {e["event_id"] for e in s["events"]}, timeout_s=30)
        names = {e["event_id"]: e["envelope"]["event"] for e in state["events"]}
        assert all(names[i] == "npm_event" for i in ids)
        assert result["status"]["acked"] >= 5
        assert missing["outcome"].startswith("rejected: ") and "assetsUrl" in missing["outcome"], missing
        assert [e.split(":")[0] for e in missing["errors"]] == ["core_unavailable"], missing["errors"]
        assert "pass assetsUrl to init" in missing["errors"][0]
        assert isinstance(missing["id"], str) and missing["queued"] == 1, "record() stores without a core"
        # The core's assets came from the copied package, never from elsewhere.
        served = {path for _m, path, status, _enc in site.requests if status == 200}
        manifest = json.loads((public / "revu" / "manifest.json").read_text())
        for asset in manifest["assets"].values():
            assert f"/revu/{asset['path']}" in served, asset["path"]
    finally:
        site.stop()
        ingest.stop()
