"""The bench's static server: the pages and every SDK's files, served the way
a production host would serve them, with a log of the bytes it sent.

* Compression: a file is sent with the best encoding the browser accepts
  (``br`` before ``gzip``) when a compressed copy exists: a sibling
  ``<file>.br`` / ``<file>.gz`` in the served folder (what a build that ships
  precompressed assets provides) wins; otherwise the copy that
  ``bench/build.mjs`` precompressed under ``build/bench/compressed/``
  for the file's current content (brotli quality 11, gzip level 9, only for
  text, JavaScript, JSON and wasm:
  archives such as ``.zip`` and ``.whl`` are sent as they are, as web servers
  do). Nothing is compressed on the fly, so no compression time lands in a
  measured load.
* Caching: files under the ``cacheable`` prefixes (all of them in the
  bench: the pages and every SDK file) get ``Cache-Control: public,
  max-age=3600`` plus an ``ETag``, so a second navigation in the same browser
  context loads them from the HTTP cache, and a page can be loaded again
  while the browser is offline; other files get ``no-cache``.
* The log: one entry per response (path, status, encoding, header and body
  bytes), so a workload can sum what one page load cost on the wire. It sees
  every request, including those a Worker makes, which the page's Resource
  Timing entries would not.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["AssetServer", "COMPRESSIBLE_SUFFIXES"]

MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".whl": "application/octet-stream",
    ".zip": "application/octet-stream",
    ".tar": "application/octet-stream",
}
# Kept in step with COMPRESSIBLE in bench/build.mjs.
COMPRESSIBLE_SUFFIXES = (".html", ".js", ".mjs", ".json", ".wasm", ".css", ".txt", ".svg", ".tar")
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


class AssetServer:
    """Serve directories under URL prefixes, with compression and caching.

    Args:
        routes: URL prefix -> directory (longest prefix wins).
        compressed_root: where build.mjs put compressed copies, as
            ``<compressed_root>/<route name>/<relative path>.br``; the route
            name is the prefix without slashes ("revu" for "/revu/").
        cacheable: URL prefixes whose files get ``max-age=3600``; others
            ``no-cache``.
        host: interface to bind; "localhost" makes the pages another site
            than a sink on 127.0.0.1.
    """

    def __init__(self, routes: Mapping[str, os.PathLike[str] | str], compressed_root: Path,
                 cacheable: tuple[str, ...], host: str = "localhost", port: int = 0) -> None:
        self.routes = sorted(((p if p.endswith("/") else p + "/", Path(d).resolve()) for p, d in routes.items()),
                             key=lambda item: len(item[0]), reverse=True)
        self.compressed_root = compressed_root
        self.cacheable = cacheable
        self.host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._hashes: dict[tuple[str, float, int], str] = {}
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> "AssetServer":
        handler = type("_BoundAssetHandler", (_AssetHandler,), {"app": self})
        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="bench-assets", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    # -- the log -----------------------------------------------------------

    def mark(self) -> int:
        """A position in the log; pass it to ``since()``."""
        with self._lock:
            return len(self._log)

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._log[mark:]]

    def _append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    # -- files -------------------------------------------------------------

    def resolve(self, url_path: str) -> tuple[str, Path, str] | None:
        """(route name, file, relative path) or None."""
        path = unquote(url_path)
        for prefix, root in self.routes:
            if path.startswith(prefix):
                rel = path[len(prefix):]
                parts = [p for p in rel.split("/") if p not in ("", ".")]
                if any(p == ".." for p in parts) or not parts:
                    return None
                target = root.joinpath(*parts)
                if target.is_file():
                    return prefix.strip("/") or "root", target, "/".join(parts)
                return None
        return None

    def variant(self, route: str, target: Path, rel: str, accept: str) -> tuple[Path, str | None]:
        """The file to send and its Content-Encoding for an Accept-Encoding."""
        accepted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        for encoding, suffix in ENCODINGS:
            if encoding not in accepted:
                continue
            # A compressed sibling shipped by the build is used whatever the file type.
            sibling = target.with_name(target.name + suffix)
            if sibling.is_file():
                return sibling, encoding
            if target.suffix.lower() in COMPRESSIBLE_SUFFIXES:
                ours = self.compressed_root / route / (rel + suffix)
                stamp = ours.with_name(ours.name + ".src-sha256")
                if ours.is_file() and stamp.is_file() and stamp.read_text() == self.sha256(target):
                    return ours, encoding
        return target, None

    def sha256(self, target: Path) -> str:
        """Hex SHA-256 of a file's content (cached by path, mtime and size)."""
        st = target.stat()
        key = (str(target), st.st_mtime, st.st_size)
        digest = self._hashes.get(key)
        if digest is None:
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            self._hashes[key] = digest
        return digest

    def etag(self, target: Path) -> str:
        return '"' + self.sha256(target)[:20] + '"'


class _AssetHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "revu-bench-assets/1"
    timeout = 60
    app: AssetServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        found = self.app.resolve(url.path)
        if found is None:
            self._plain(404, b"not found\n", url.path)
            return
        route, target, rel = found
        cacheable = any(url.path.startswith(p) for p in self.app.cacheable)
        etag = self.app.etag(target)
        send_path, encoding = self.app.variant(route, target, rel, self.headers.get("Accept-Encoding") or "")
        headers = [
            ("Content-Type", MIME.get(target.suffix.lower(), "application/octet-stream")),
            ("Cache-Control", "public, max-age=3600" if cacheable else "no-cache"),
            ("ETag", etag),
            ("Vary", "Accept-Encoding"),
            ("Access-Control-Allow-Origin", "*"),
        ]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        if self.headers.get("If-None-Match") == etag:
            self._respond(304, headers, b"", url.path, encoding, target)
            return
        body = send_path.read_bytes()
        self._respond(200, headers, body, url.path, encoding, target)

    def _plain(self, status: int, body: bytes, path: str) -> None:
        self._respond(status, [("Content-Type", "text/plain")], body, path, None, None)

    def _respond(self, status: int, headers: list[tuple[str, str]], body: bytes, path: str,
                 encoding: str | None, target: Path | None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        # What goes on the wire: status line + headers (as BaseHTTPRequestHandler
        # buffered them, + the blank line) + body.
        header_bytes = sum(len(line) for line in getattr(self, "_headers_buffer", [])) + 2
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
        self.app._append({
            "t": time.monotonic(), "path": path, "status": status, "encoding": encoding,
            "body_bytes": len(body) if self.command != "HEAD" else 0,
            "header_bytes": header_bytes,
            "file_bytes": target.stat().st_size if target is not None else 0,
        })
