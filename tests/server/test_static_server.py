"""The static server for demo pages, the demo runner and the demo page files."""

from __future__ import annotations

import email.utils
import gzip
import http.client
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import brotli

from demo.static_server import StaticServer, cache_control_for, pick_encoding

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"top secret, never served"
WASM = b"\x00asm\x01\x00\x00\x00" + b"\x00" * 500


@pytest.fixture
def trees(tmp_path):
    site = tmp_path / "site"
    dist = tmp_path / "dist"
    (site / "sub").mkdir(parents=True)
    (dist / "pyodide").mkdir(parents=True)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (site / "index.html").write_text("<!doctype html><title>site</title>")
    (site / "sub" / "index.html").write_text("sub index")
    (site / "app.css").write_text("body{}")
    (site / "revu.js").write_text("// the site's own, must be shadowed by /revu/")
    files = {
        "revu.js": b"window.revu = {};",
        "worker.mjs": b"export {};",
        "revu.js.map": b"{}",
        "pyodide/pyodide.asm.wasm": b"\x00asm\x01\x00\x00\x00",
        "pyodide/pyodide-lock.json": b"{}",
        "pyodide/python_stdlib.zip": b"PK\x05\x06" + b"\x00" * 18,
        "assets/pyodide.asm.0123456789abcdef.wasm": WASM,
        "assets/python_stdlib.fedcba9876543210.zip": b"PK\x03\x04" + b"\x00" * 200,
        "revu-0.1.0-py3-none-any.whl": b"PK\x05\x06" + b"\x00" * 18,
        "pyodide/pyodide.mjs": b"export {};",
        "notes.unknownext": b"?",
    }
    (dist / "assets").mkdir()
    for name, content in files.items():
        (dist / name).write_bytes(content)
    # Precompressed copies, as the build writes them (the wasm has both, the zip only gzip).
    for name in ("revu.js", "assets/pyodide.asm.0123456789abcdef.wasm"):
        (dist / f"{name}.br").write_bytes(brotli.compress(files[name]))
        (dist / f"{name}.gz").write_bytes(gzip.compress(files[name]))
    (dist / "assets/python_stdlib.fedcba9876543210.zip.gz").write_bytes(
        gzip.compress(files["assets/python_stdlib.fedcba9876543210.zip"]))
    return site, dist


@pytest.fixture
def static(trees):
    site, dist = trees
    server = StaticServer({"/": site, "/revu": dist}).start()
    try:
        yield server
    finally:
        server.stop()


def get(server: StaticServer, raw_path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    """Send the path exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest(method, raw_path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        return response.status, response, body
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/revu/revu.js", "text/javascript"),
        ("/revu/worker.mjs", "text/javascript"),
        ("/revu/pyodide/pyodide.mjs", "text/javascript"),
        ("/revu/pyodide/pyodide.asm.wasm", "application/wasm"),
        ("/revu/pyodide/pyodide-lock.json", "application/json"),
        ("/revu/pyodide/python_stdlib.zip", "application/zip"),
        ("/revu/assets/pyodide.asm.0123456789abcdef.wasm", "application/wasm"),
        ("/revu/assets/python_stdlib.fedcba9876543210.zip", "application/zip"),
        ("/revu/revu-0.1.0-py3-none-any.whl", "application/octet-stream"),
        ("/revu/revu.js.map", "application/json"),
        ("/revu/notes.unknownext", "application/octet-stream"),
        ("/", "text/html"),
        ("/app.css", "text/css"),
    ],
)
def test_mime_types(static, trees, path, media_type):
    status, response, body = get(static, path)
    assert status == 200
    assert response.getheader("Content-Type").split(";")[0] == media_type
    assert response.getheader("Cache-Control") == cache_control_for(path)
    assert response.getheader("Content-Encoding") is None  # the request accepts no encoding
    assert int(response.getheader("Content-Length")) == len(body)


def test_wasm_type_has_no_parameters(static):
    # WebAssembly.instantiateStreaming wants exactly application/wasm.
    _, response, body = get(static, "/revu/pyodide/pyodide.asm.wasm")
    assert response.getheader("Content-Type") == "application/wasm"
    assert body.startswith(b"\x00asm")


def test_longest_prefix_wins_and_index_html(static):
    status, _, body = get(static, "/revu/revu.js")
    assert (status, body) == (200, b"window.revu = {};")
    status, _, body = get(static, "/")
    assert status == 200 and b"<title>site</title>" in body
    status, _, body = get(static, "/sub/")
    assert (status, body) == (200, b"sub index")


def test_directory_without_slash_redirects(static):
    status, response, _ = get(static, "/sub?x=1")
    assert status == 301
    assert response.getheader("Location") == "/sub/?x=1"
    status, response, _ = get(static, "/revu")
    assert status == 301
    assert response.getheader("Location") == "/revu/"


def test_missing_file_is_404(static):
    assert get(static, "/nope.js")[0] == 404
    assert get(static, "/revu/")[0] == 404  # no index.html, and no listings


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/revu/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/revu/%2E%2E/%2e%2e/secret.txt",
        "/revu/..%2f..%2fsecret.txt",
        "/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%5c..%5csecret.txt",
        "/%00/secret.txt",
    ],
)
def test_path_traversal_is_blocked(static, path):
    status, _, body = get(static, path)
    assert status in (400, 403, 404)
    assert SECRET not in body


def test_head_and_methods(static):
    status, response, body = get(static, "/revu/revu.js", method="HEAD")
    assert status == 200
    assert body == b""
    assert response.getheader("Content-Length") == str(len(b"window.revu = {};"))
    status, response, _ = get(static, "/revu/revu.js", method="POST")
    assert status == 405


def test_keep_alive_several_files_one_connection(static):
    conn = http.client.HTTPConnection("127.0.0.1", static.port, timeout=5)
    try:
        conn.connect()
        sock = conn.sock
        for path in ("/", "/revu/revu.js", "/missing", "/revu/pyodide/pyodide.asm.wasm"):
            conn.request("GET", path)
            conn.getresponse().read()
        assert conn.sock is sock
    finally:
        conn.close()


def test_routes_need_absolute_prefixes(trees):
    with pytest.raises(ValueError):
        StaticServer({"revu/": trees[1]})


# ---- run_demo.py ------------------------------------------------------------


def test_run_demo_without_build_says_to_build(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--dist", str(tmp_path / "no-dist")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "revu.js" in result.stderr
    assert "build" in result.stderr.lower()


def test_run_demo_serves_page_and_sdk_on_two_origins(tmp_path, trees):
    _, dist = trees
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "demo" / "run_demo.py"),
            "--site-port", "0",
            "--ingest-port", "0",
            "--db", str(tmp_path / "demo.sqlite3"),
            "--dist", str(dist),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("open "):
                break
        output = "".join(lines)
        match = re.search(r"open (http://localhost:(\d+)/)\?ingest=(http://127\.0\.0\.1:\d+)", output)
        assert match, output
        site_port, ingest = int(match.group(2)), match.group(3)

        conn = http.client.HTTPConnection("localhost", site_port, timeout=5)
        conn.request("GET", "/")
        page = conn.getresponse().read()
        conn.request("GET", "/revu/revu.js")
        sdk = conn.getresponse().read()
        conn.close()
        assert b'<script src="/revu/revu.js"></script>' in page
        assert sdk == b"window.revu = {};"

        host, port = ingest.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# ---- the demo page ----------------------------------------------------------


def test_demo_page_is_self_hosted():
    site = ROOT / "demo" / "site"
    html = (site / "index.html").read_text()
    assert '<script src="/revu/revu.js"></script>' in html
    for name in ("index.html", "demo.js", "demo.css"):
        text = (site / name).read_text()
        # No remote loads: src/href/url()/import/fetch must not point off-site.
        remote = re.findall(r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", text)
        assert remote == [], (name, remote)
    js = (site / "demo.js").read_text()
    assert 'revu.init({ apiKey: "demo-key", host: INGEST, debug: true })' in js
    assert "http://127.0.0.1:8787" in js


# ---- precompressed copies, caching, revalidation -------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("br, gzip", "br"),
        ("gzip, deflate, br, zstd", "br"),  # Chromium's header: br wins whatever the order
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("br;q=0.5, gzip;q=1", "br"),  # we prefer br whenever it is acceptable
        ("*", "br"),
        ("*;q=0, gzip", "gzip"),
        ("identity", None),
        ("gzip;q=0, br;q=0", None),
        ("", None),
        ("br;q=nonsense, gzip", "gzip"),
    ],
)
def test_pick_encoding(accept, expected):
    assert pick_encoding(accept, {"br", "gzip"}) == expected


def test_pick_encoding_only_offers_what_exists():
    assert pick_encoding("br, gzip", {"gzip"}) == "gzip"
    assert pick_encoding("br", {"gzip"}) is None
    assert pick_encoding("br, gzip", set()) is None


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [("gzip, deflate, br", "br", brotli.decompress), ("gzip", "gzip", gzip.decompress), (None, None, lambda b: b)],
)
def test_precompressed_copy_is_served_with_content_encoding_and_vary(static, accept, encoding, decode):
    headers = {"Accept-Encoding": accept} if accept else {}
    status, response, body = get(static, "/revu/assets/pyodide.asm.0123456789abcdef.wasm", headers=headers)
    assert status == 200
    assert response.getheader("Content-Encoding") == encoding
    assert response.getheader("Content-Type") == "application/wasm"  # the type of what it decodes to
    assert response.getheader("Vary") == "Accept-Encoding"
    assert int(response.getheader("Content-Length")) == len(body)
    assert decode(body) == WASM


def test_only_gzip_copy_is_used_for_a_brotli_client(static):
    status, response, body = get(static, "/revu/assets/python_stdlib.fedcba9876543210.zip",
                                 headers={"Accept-Encoding": "br, gzip"})
    assert (status, response.getheader("Content-Encoding")) == (200, "gzip")
    assert gzip.decompress(body).startswith(b"PK\x03\x04")


def test_no_vary_when_there_is_no_compressed_copy(static):
    _, response, _ = get(static, "/revu/revu-0.1.0-py3-none-any.whl", headers={"Accept-Encoding": "br"})
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("Vary") is None


def test_cache_control_immutable_for_hashed_names_revalidate_for_the_rest(static):
    _, response, _ = get(static, "/revu/assets/pyodide.asm.0123456789abcdef.wasm", headers={"Accept-Encoding": "br"})
    assert response.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    for path in ("/revu/revu.js", "/", "/revu/pyodide/pyodide.asm.wasm"):
        _, response, _ = get(static, path)
        assert response.getheader("Cache-Control") == "no-cache", path
    assert cache_control_for("python_stdlib.0123456789abcdef.zip") == "public, max-age=31536000, immutable"
    assert cache_control_for("python_stdlib.0123456789ABCDEF.zip") == "no-cache"  # the build writes lower case
    assert cache_control_for("app.0123456789abcde.js") == "no-cache"  # 15 hex digits: not ours


def test_etag_differs_per_encoding_and_revalidates_with_304(static):
    path = "/revu/revu.js"
    _, plain, _ = get(static, path)
    _, br, _ = get(static, path, headers={"Accept-Encoding": "br"})
    assert plain.getheader("ETag") != br.getheader("ETag")
    assert plain.getheader("Last-Modified")
    status, response, body = get(static, path, headers={"Accept-Encoding": "br", "If-None-Match": br.getheader("ETag")})
    assert (status, body) == (304, b"")
    assert response.getheader("ETag") == br.getheader("ETag")
    assert response.getheader("Cache-Control") == "no-cache"
    assert response.getheader("Vary") == "Accept-Encoding"
    # The identity ETag does not validate the brotli body.
    status, _, body = get(static, path, headers={"Accept-Encoding": "br", "If-None-Match": plain.getheader("ETag")})
    assert status == 200 and brotli.decompress(body) == b"window.revu = {};"
    status, _, _ = get(static, path, headers={"If-None-Match": f'"nope", W/{plain.getheader("ETag")}'})
    assert status == 304


def test_if_modified_since(static, trees):
    _, dist = trees
    mtime = (dist / "revu.js").stat().st_mtime
    later = email.utils.formatdate(mtime + 60, usegmt=True)
    earlier = email.utils.formatdate(mtime - 60, usegmt=True)
    assert get(static, "/revu/revu.js", headers={"If-Modified-Since": later})[0] == 304
    assert get(static, "/revu/revu.js", headers={"If-Modified-Since": earlier})[0] == 200
    assert get(static, "/revu/revu.js", headers={"If-Modified-Since": "garbage"})[0] == 200
    # If-None-Match wins over If-Modified-Since.
    assert get(static, "/revu/revu.js", headers={"If-Modified-Since": later, "If-None-Match": '"other"'})[0] == 200


def test_head_of_a_compressed_copy(static):
    status, response, body = get(static, "/revu/revu.js", method="HEAD", headers={"Accept-Encoding": "br"})
    assert (status, body) == (200, b"")
    assert response.getheader("Content-Encoding") == "br"
    assert int(response.getheader("Content-Length")) == len(brotli.compress(b"window.revu = {};"))
