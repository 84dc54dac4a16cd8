"""The built dist/ (./dev build): layout, content hashes, precompressed copies and the
trimmed, precompiled stdlib. Run after a build; ./dev test dist builds first."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path

import brotli
import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
TRACE = ROOT / "build" / "core" / "trace.json"
HASHED = re.compile(r"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{16})(?P<ext>\.[a-z]+)$")


@pytest.fixture(scope="module")
def manifest() -> dict:
    path = DIST / "manifest.json"
    if not path.is_file():
        pytest.fail("dist/manifest.json is missing: run ./dev build first")
    return json.loads(path.read_text())


def test_manifest_lists_hashed_assets_that_match_their_content(manifest):
    assert manifest["version"] == 1
    assert {"loader", "asm", "wasm", "stdlib"} <= set(manifest["assets"])
    assert set(manifest["assets"]) <= {"loader", "asm", "wasm", "stdlib", "snapshot"}
    for key, entry in manifest["assets"].items():
        path = DIST / entry["path"]
        assert path.parent == DIST / "assets", key
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        match = HASHED.match(path.name)
        assert match, f"{key}: {path.name} has no content hash"
        assert match["hash"] == sha[:16], key
        assert (entry["sha256"], entry["bytes"]) == (sha, len(data)), key
    # The lock is inline and lists nothing: revu is in the stdlib zip.
    assert manifest["lock"]["packages"] == {}
    assert manifest["lock"]["info"]["python"].startswith("3.14")


def test_assets_folder_holds_only_the_manifest_and_compressed_copies(manifest):
    listed = {entry["path"] for entry in manifest["assets"].values()} | {manifest["worker"]["path"]}
    for path in (DIST / "assets").iterdir():
        rel = path.relative_to(DIST).as_posix()
        base = re.sub(r"\.(br|gz)$", "", rel)
        assert base in listed, f"{rel} is not in the manifest"
    assert not (DIST / "pyodide").exists(), "dist/pyodide/ is gone: assets are content-hashed under dist/assets/"
    assert sorted(p.name for p in DIST.glob("*.whl")) == ["revu-0.1.0-py3-none-any.whl"]


def test_every_file_but_the_wheel_has_brotli_and_gzip_copies_that_decode_to_it(manifest):
    files = [p for p in DIST.rglob("*") if p.is_file() and p.suffix not in (".br", ".gz", ".whl")]
    assert DIST / "revu.js" in files
    for path in files:
        data = path.read_bytes()
        br, gz = Path(f"{path}.br"), Path(f"{path}.gz")
        assert br.is_file() and gz.is_file(), f"{path.relative_to(DIST)} lacks a compressed copy"
        assert brotli.decompress(br.read_bytes()) == data, path
        assert gzip.decompress(gz.read_bytes()) == data, path
        assert br.stat().st_size < len(data) and gz.stat().st_size < len(data), path


def test_revu_js_has_the_manifest_inlined(manifest):
    js = (DIST / "revu.js").read_text()
    for entry in [*manifest["assets"].values(), manifest["worker"]]:
        assert entry["path"] in js
    assert "__REVU_MANIFEST__" not in js  # esbuild replaced it with the object (minified)
    assert "pyodide-lock.json" not in js


def test_pyodide_loader_is_patched_and_maps_are_not_referenced(manifest):
    loader = (DIST / manifest["assets"]["loader"]["path"]).read_text()
    assert 'if(typeof WasmOffsetConverter<"u")return;' not in loader  # never fetches the wasm itself
    assert '=="string"?' in loader and "Promise.resolve(" in loader  # takes the stdlib's bytes
    for key in ("loader", "asm"):
        assert "sourceMappingURL" not in (DIST / manifest["assets"][key]["path"]).read_text()[-300:], key


def test_stdlib_zip_is_stored_pyc_compiled_by_pyodide(manifest):
    path = DIST / manifest["assets"]["stdlib"]["path"]
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert all(n.endswith(".pyc") for n in names), [n for n in names if not n.endswith(".pyc")]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)  # deterministic
        assert names == sorted(names)
        for needed in ("revu/__init__.pyc", "revu/_bridge.pyc", "revu/_outbox.pyc", "encodings/__init__.pyc",
                       "json/__init__.pyc", "_pyodide/__init__.pyc", "pyodide/__init__.pyc"):
            assert needed in names, needed
        for absent in ("sqlite3/__init__.pyc", "unittest/__init__.pyc", "xml/__init__.pyc"):
            assert absent not in names, absent
        headers = {z.read(n)[:8] for n in names}
    magics = {h[:4] for h in headers}
    assert len(magics) == 1, "every .pyc comes from the same interpreter"
    # Pyodide's Python 3.14, not this CPython: the magic number differs.
    assert magics != {importlib.util.MAGIC_NUMBER}
    # PEP 552 unchecked hash-based pycs: flags 0b01.
    assert {int.from_bytes(h[4:8], "little") for h in headers} == {1}


def test_stdlib_zip_holds_exactly_the_traced_modules(manifest):
    if not TRACE.is_file():
        pytest.fail("build/core/trace.json is missing: run ./dev build first")
    trace = json.loads(TRACE.read_text())
    with zipfile.ZipFile(DIST / manifest["assets"]["stdlib"]["path"]) as z:
        assert sorted(z.namelist()) == sorted(member for _name, _origin, member in trace["modules"])
    assert {"revu", "revu._bridge", "email.utils"} <= {name for name, _o, _m in trace["modules"]}


def test_snapshot_when_present_is_bound_to_this_stdlib(manifest):
    snap = manifest["assets"].get("snapshot")
    if snap is None:
        assert not list((DIST / "assets").glob("*.snapshot"))
        return
    head = (DIST / snap["path"]).read_bytes()[:128]
    assert head[:8] == b"REVUSNP1"
    assert head[8:72].decode() == manifest["assets"]["stdlib"]["sha256"] == snap["stdlibSha256"]
