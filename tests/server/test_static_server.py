"""The static server for demo pages, the demo runner and the demo page files."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.static_server import StaticServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"top secret, never served"


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
        "revu-0.1.0-py3-none-any.whl": b"PK\x05\x06" + b"\x00" * 18,
        "pyodide/pyodide.mjs": b"export {};",
        "notes.unknownext": b"?",
    }
    for name, content in files.items():
        (dist / name).write_bytes(content)
    return site, dist


@pytest.fixture
def static(trees):
    site, dist = trees
    server = StaticServer({"/": site, "/revu": dist}).start()
    try:
        yield server
    finally:
        server.stop()


def get(server: StaticServer, raw_path: str, method: str = "GET") -> tuple[int, http.client.HTTPResponse, bytes]:
    """Send the path exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest(method, raw_path, skip_accept_encoding=True)
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
        ("/revu/pyodide/python_stdlib.zip", "application/octet-stream"),
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
    assert response.getheader("Cache-Control") == "no-store"
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
