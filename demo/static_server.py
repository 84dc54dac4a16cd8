"""A small static file server for the demo page and the built SDK.

Maps URL prefixes to directories (the longest prefix wins) and serves ``dist/``
the way docs/serving.md asks a production server to:

- the MIME types Pyodide needs (``application/wasm`` above all: streaming
  compilation refuses anything else; ``text/javascript`` for ``.mjs``);
- the precompressed copy ``FILE.br`` or ``FILE.gz`` when the request's
  ``Accept-Encoding`` allows it (brotli first), with ``Content-Encoding`` and
  ``Vary: Accept-Encoding``;
- ``Cache-Control: public, max-age=31536000, immutable`` for content-hashed
  names (``name.<16 hex>.ext``), ``no-cache`` for everything else (revu.js,
  pages), so a rebuilt ``dist/`` is picked up on the next load;
- ``ETag`` and ``Last-Modified``, answering ``If-None-Match`` /
  ``If-Modified-Since`` with 304.

    python demo/static_server.py --port 8000 / demo/site /revu/ dist
"""

from __future__ import annotations

import argparse
import collections
import email.utils
import mimetypes
import os
import re
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

try:
    from demo._http import DemoHTTPServer, ServerLifecycle
except ImportError:  # run as a script: demo/ itself is on sys.path
    from _http import DemoHTTPServer, ServerLifecycle  # type: ignore[no-redef]

__all__ = ["StaticServer", "MIME_TYPES", "content_type_for", "cache_control_for", "pick_encoding", "main"]

MIME_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".whl": "application/octet-stream",
    ".zip": "application/zip",
    ".snapshot": "application/octet-stream",
    ".tar": "application/octet-stream",
    ".data": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".py": "text/plain; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# Built-in table only: mimetypes.guess_type() would read /etc/mime.types and
# vary by machine.
_FALLBACK_TYPES = mimetypes.MimeTypes()


def content_type_for(path: str | os.PathLike[str]) -> str:
    """The Content-Type this server sends for a file name."""
    suffix = Path(path).suffix.lower()
    if suffix in MIME_TYPES:
        return MIME_TYPES[suffix]
    guessed, _ = _FALLBACK_TYPES.guess_type(Path(path).name, strict=True)
    return guessed or "application/octet-stream"


# A content-hashed name, as scripts/build_dist.py writes them: name.<16 hex>.ext
_HASHED = re.compile(r"\.[0-9a-f]{16}\.[A-Za-z0-9]+$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# Precompressed copies we look for, in order of preference.
_ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


def cache_control_for(path: str | os.PathLike[str]) -> str:
    """``immutable`` for content-hashed names, revalidation for the rest."""
    return IMMUTABLE if _HASHED.search(Path(path).name) else REVALIDATE


def _accepted(header: str) -> dict[str, float]:
    """Accept-Encoding as {coding: q}; malformed q-values count as 0."""
    out: dict[str, float] = {}
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        coding = fields[0].lower()
        if not coding:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out[coding] = q
    return out


def pick_encoding(accept_encoding: str | None, available: set[str]) -> str | None:
    """The content coding to send: ``br`` before ``gzip`` among those the client
    accepts (q > 0, ``*`` included) and we have a copy of; None for identity."""
    if not accept_encoding or not available:
        return None
    accepted = _accepted(accept_encoding)
    for coding, _suffix in _ENCODINGS:
        if coding not in available:
            continue
        q = accepted.get(coding, accepted.get("*", 0.0))
        if q > 0:
            return coding
    return None


def _normalize_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        raise ValueError(f"route prefix must start with '/': {prefix!r}")
    return prefix if prefix.endswith("/") else prefix + "/"


class StaticServer(ServerLifecycle):
    """Serve directories under URL prefixes, in a background thread.

    Args:
        routes: URL prefix -> directory, e.g. {"/": Path("demo/site"),
            "/revu/": Path("dist")}. A prefix without a trailing slash gets one.
            The longest matching prefix wins.
        host: interface to bind ("localhost" gives the page its own origin,
            distinct from an ingest server on 127.0.0.1).
        port: TCP port; 0 picks a free one.
        headers: extra headers sent with every file (e.g. COOP/COEP).
        verbose: log one line per request to stderr.

    Directories serve their index.html (no listings). Paths that try to leave
    a route's directory ("..", encoded or not) get 403. Symlinks inside a
    served directory are followed, because build steps may link large assets.
    """

    def __init__(
        self,
        routes: Mapping[str, str | os.PathLike[str]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        headers: Mapping[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        if not routes:
            raise ValueError("StaticServer needs at least one route")
        self.routes: dict[str, Path] = {}
        for prefix, directory in routes.items():
            self.routes[_normalize_prefix(prefix)] = Path(os.path.abspath(directory))
        # Longest prefix first.
        self._ordered = sorted(self.routes.items(), key=lambda item: len(item[0]), reverse=True)
        self.host = host
        self.headers = dict(headers or {})
        self.verbose = verbose
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        # (method, path, status, content coding) of the last requests, for tests.
        self.requests: collections.deque[tuple[str, str, int, str | None]] = collections.deque(maxlen=1000)

    def start(self) -> "StaticServer":
        """Bind and serve in a daemon thread. Returns self."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("StaticServer can be started once; make a new one")
        self._httpd = _HTTPServer((self.host, self._requested_port), _StaticHandler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="revu-static", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


    def resolve(self, url_path: str) -> tuple[int, Path | str | None]:
        """Map a URL path to a file.

        Returns:
            (200, file path), (301, location), (403, None) or (404, None).
        """
        path = unquote(url_path, errors="strict") if "%" in url_path else url_path
        if "\x00" in path or "\\" in path:
            return 403, None
        for prefix, root in self._ordered:
            if path.startswith(prefix):
                rest = path[len(prefix):]
                break
            if path + "/" == prefix:
                return 301, prefix
        else:
            return 404, None
        segments = [s for s in rest.split("/") if s not in ("", ".")]
        if any(s == ".." for s in segments):
            return 403, None
        target = root.joinpath(*segments)
        # Belt and braces: lexically inside the root, whatever the segments were.
        if os.path.commonpath([root, os.path.normpath(target)]) != str(root):
            return 403, None
        if target.is_dir():
            if not path.endswith("/"):
                return 301, path + "/"
            target = target / "index.html"
        if not target.is_file():
            return 404, None
        return 200, target


class _HTTPServer(DemoHTTPServer):
    app: StaticServer


class _StaticHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "revu-static/0.1"
    timeout = 60
    server: _HTTPServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        coding = getattr(self, "_coding", None)
        self.server.app.requests.append((self.command, self.path, int(code) if str(code).isdigit() else 0, coding))
        super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.app.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._coding: str | None = None
        self._discard_body()
        url = urlsplit(self.path)
        try:
            status, found = self.server.app.resolve(url.path)
        except UnicodeDecodeError:
            status, found = 400, None
        if status == 200:
            assert isinstance(found, Path)
            self._send_file(found)
        elif status == 301:
            location = str(found) + (f"?{url.query}" if url.query else "")
            self._send_text(301, f"moved to {location}\n", {"Location": location})
        else:
            reason = {400: "bad request", 403: "forbidden", 404: "not found"}[status]
            self._send_text(status, f"{status} {reason}: {url.path}\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._discard_body()
        self._send_text(405, "405 method not allowed\n", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed

    def _discard_body(self) -> None:
        # Keep-alive: an unread request body would be parsed as the next request.
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= 1 << 20:
            self.rfile.read(int(length))
        elif length or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True

    def _common_headers(self, cache_control: str = "no-store") -> None:
        self.send_header("Cache-Control", cache_control)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in self.server.app.headers.items():
            self.send_header(name, value)

    def _send_text(self, status: int, text: str, extra: Mapping[str, str] | None = None) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, path: Path) -> None:
        variants = {coding: Path(f"{path}{suffix}") for coding, suffix in _ENCODINGS}
        available = {coding for coding, p in variants.items() if p.is_file()}
        coding = pick_encoding(self.headers.get("Accept-Encoding"), available)
        served = variants[coding] if coding else path
        self._coding = coding
        try:
            handle = open(served, "rb")
        except OSError:
            self._send_text(404, f"404 not found: {self.path}\n")
            return
        with handle:
            stat = os.fstat(handle.fileno())
            # One validator per representation: the br, gzip and identity bodies differ.
            etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}{"-" + coding if coding else ""}"'
            last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
            headers = {"ETag": etag, "Last-Modified": last_modified}
            if available:
                headers["Vary"] = "Accept-Encoding"
            if self._not_modified(etag, stat.st_mtime):
                self.send_response(304)
                for name, value in headers.items():
                    self.send_header(name, value)
                self._common_headers(cache_control_for(path))
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type_for(path))
            if coding:
                self.send_header("Content-Encoding", coding)
            self.send_header("Content-Length", str(stat.st_size))
            for name, value in headers.items():
                self.send_header(name, value)
            self._common_headers(cache_control_for(path))
            self.end_headers()
            if self.command != "HEAD":
                try:
                    shutil.copyfileobj(handle, self.wfile, 256 * 1024)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

    def _not_modified(self, etag: str, mtime: float) -> bool:
        """RFC 9110 13.1.1-13.1.3: If-None-Match wins over If-Modified-Since."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [t.strip() for t in if_none_match.split(",")]
            weak_free = {t[2:] if t.startswith("W/") else t for t in tags}
            return "*" in weak_free or etag in weak_free
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                when = email.utils.parsedate_to_datetime(since)
            except (TypeError, ValueError):
                return False
            if when is None or when.tzinfo is None:
                return False
            return int(mtime) <= int(when.timestamp())
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve directories under URL prefixes (see the module docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("routes", nargs="+", metavar="PREFIX DIR", help="pairs: URL prefix then directory")
    args = parser.parse_args(argv)
    if len(args.routes) % 2:
        parser.error("routes come in pairs: PREFIX DIR [PREFIX DIR ...]")
    routes = dict(zip(args.routes[::2], args.routes[1::2]))
    server = StaticServer(routes, args.host, args.port, verbose=args.verbose).start()
    for prefix, directory in server.routes.items():
        print(f"  {server.url}{prefix} -> {directory}")
    print(f"revu static server on {server.url}/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
