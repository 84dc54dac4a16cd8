"""A bench-only ingest sink that speaks every compared SDK's wire format.

One HTTP server on its own origin (the page is on another one, so every
request is a real CORS request, as in production) accepts:

=============  ===========================================  ===================
SDK            path(s)                                      message id
=============  ===========================================  ===================
revu           ``POST /v1/behavior/events``                 ``event_id``
posthog-js     ``POST /posthog/e/``, ``/posthog/batch/``,   ``uuid``
               ``/posthog/i/v0/e/`` (any path under it)
segment        ``POST /segment/v1/t`` (``/i``, ``/p``,      ``messageId``
               ``/batch``, ``/b`` ...)
amplitude      ``POST /amplitude/2/httpapi`` (``/batch``)   ``insert_id``
mixpanel       ``POST /mixpanel/track/`` (``/engage/`` ...) ``$insert_id``
=============  ===========================================  ===================

Bodies are decoded whatever the SDK chose: gzip (``Content-Encoding`` or
PostHog's ``compression=gzip-js``), form bodies with ``data=`` holding JSON or
base64 JSON (PostHog ``compression=base64``, Mixpanel's default), plain JSON.
A body that cannot be decoded gets 400 and is listed in ``undecoded``.

Counting, per SDK: events by the SDK's own message id (unique, and receipts
beyond the first as duplicates), split into *bench* events (names starting
with ``bench``, the ones the workloads record) and *extra* events (anything
the SDK adds on its own); POSTs, CORS preflights, and request bytes (request
line + headers + body as received). Times are ``time.monotonic()`` of this
process, so the harness can compare them with its own clock.

Offline switch: ``set_offline(True)`` makes the sink close every connection
at once, without reading or replying (preflights included): the browser sees
a network error, exactly as when an ingest host is unreachable. Those
attempts are counted as ``refused`` and nothing else is recorded for them.
The page's own origin is not affected, so reloads keep working. Unlike
Playwright's ``route()``, this also stops ``sendBeacon`` and keepalive
requests sent while a page unloads.

Replies are what each SDK expects from its real service (PostHog
``{"status": 1}``, Amplitude ``{"code": 200, ...}``, Mixpanel ``1`` or
``{"status": 1}`` with ``verbose=1``, revu ``{"ok": true, "accept_encoding": ["gzip"]}``
as revu-ingest answers); CORS echoes the
``Origin`` with credentials allowed (Mixpanel and beacons send credentials)
and lets preflights be cached for 10 minutes.

Stdlib only. Not a reference server: it never rejects an event, stores
nothing on disk and keeps ids in memory until ``reset()``.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

__all__ = ["Sink", "SDK_PREFIXES", "sdk_for_path"]

# URL prefix -> SDK name. revu keeps its contract's path at the root.
SDK_PREFIXES = {
    "/posthog/": "posthog",
    "/segment/": "segment",
    "/amplitude/": "amplitude",
    "/mixpanel/": "mixpanel",
}
REVU_PATH = "/v1/behavior/events"
MAX_BODY_BYTES = 64 * 1024 * 1024


def sdk_for_path(path: str) -> str | None:
    """The SDK a request path belongs to, or None."""
    if path == REVU_PATH:
        return "revu"
    for prefix, name in SDK_PREFIXES.items():
        if path.startswith(prefix):
            return name
    return None


class _Undecodable(ValueError):
    pass


def _maybe_gunzip(body: bytes, headers: Any, query: dict[str, list[str]]) -> bytes:
    encoding = (headers.get("Content-Encoding") or "").lower()
    if encoding == "gzip" or body[:2] == b"\x1f\x8b" or "gzip" in "".join(query.get("compression", [])):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise _Undecodable(f"gzip: {exc}") from exc
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding and encoding != "identity":
        raise _Undecodable(f"unsupported Content-Encoding {encoding!r}")
    return body


def _json_or_base64(text: str) -> Any:
    text = text.strip()
    if text[:1] in ("{", "["):
        return json.loads(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in text or "_" in text) else None)
    except ValueError as exc:
        raise _Undecodable(f"data is neither JSON nor base64: {exc}") from exc
    return json.loads(raw.decode("utf-8"))


def decode_body(body: bytes, headers: Any, query: dict[str, list[str]]) -> Any:
    """Decode a request body to JSON, whatever encoding the SDK used.

    Raises:
        _Undecodable: with the reason.
    """
    raw = _maybe_gunzip(body, headers, query)
    content_type = (headers.get("Content-Type") or "").lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Undecodable(f"body is not UTF-8: {exc}") from exc
    try:
        if "x-www-form-urlencoded" in content_type or text.startswith("data="):
            form = parse_qs(text, keep_blank_values=True)
            if "data" not in form:
                raise _Undecodable("form body without data=")
            return _json_or_base64(form["data"][0])
        if not text.strip() and "data" in query:  # GET-style payload in the query
            return _json_or_base64(query["data"][0])
        return _json_or_base64(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Undecodable(str(exc)) from exc


def _as_list(payload: Any, *keys: str) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        for key in keys:
            if isinstance(payload.get(key), list):
                return payload[key]
        return [payload]
    return []


def extract_events(sdk: str, payload: Any) -> list[tuple[str | None, str | None, dict]]:
    """(message id, event name, properties) for every event in a payload."""
    out: list[tuple[str | None, str | None, dict]] = []
    if sdk == "revu":
        for env in _as_list(payload, "batch"):
            if isinstance(env, dict):
                out.append((env.get("event_id"), env.get("event"), env.get("properties") or {}))
    elif sdk == "posthog":
        for ev in _as_list(payload, "batch"):
            if isinstance(ev, dict):
                out.append((ev.get("uuid"), ev.get("event"), ev.get("properties") or {}))
    elif sdk == "segment":
        for ev in _as_list(payload, "batch"):
            if isinstance(ev, dict):
                out.append((ev.get("messageId"), ev.get("event") or ev.get("type"), ev.get("properties") or {}))
    elif sdk == "amplitude":
        for ev in _as_list(payload, "events"):
            if isinstance(ev, dict):
                out.append((ev.get("insert_id"), ev.get("event_type"), ev.get("event_properties") or {}))
    elif sdk == "mixpanel":
        for ev in _as_list(payload):
            if isinstance(ev, dict):
                props = ev.get("properties") or {}
                out.append((props.get("$insert_id"), ev.get("event"), props))
    return out


def _new_stats() -> dict[str, Any]:
    return {
        "receipts": Counter(),  # message id -> times received (bench events)
        "extra_receipts": Counter(),  # message id -> times received (other events)
        "extra_names": Counter(),
        "bench_seq": set(),  # (run, i) of bench events, a content-level cross-check
        "no_id": 0,
        "posts": 0,
        "preflights": 0,
        "gets": 0,
        "request_bytes": 0,
        "body_bytes": 0,
        "refused": 0,
        "paths": Counter(),
        "first_at": None,
        "last_at": None,
        "last_new_at": None,  # last time a request brought a bench event not seen before
        "max_events_per_request": 0,
    }


class Sink:
    """The multi-SDK sink, served from a background thread.

    Args:
        host: interface to bind (the page runs on another host name, so the
            sink is another site, as an ingest host is in production).
        port: 0 picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._offline = False
        self._stats: dict[str, dict[str, Any]] = {}
        self._unknown: list[dict[str, Any]] = []
        self._undecoded: list[dict[str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "Sink":
        handler = type("_BoundSinkHandler", (_SinkHandler,), {"sink": self})
        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bench-sink", daemon=True)
        self._thread.start()
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

    # -- switches ----------------------------------------------------------

    def set_offline(self, offline: bool) -> None:
        with self._lock:
            self._offline = offline
            self._changed.notify_all()

    @property
    def offline(self) -> bool:
        return self._offline

    def reset(self) -> None:
        with self._lock:
            self._stats = {}
            self._unknown = []
            self._undecoded = []
            self._offline = False
            self._changed.notify_all()

    # -- reading -----------------------------------------------------------

    def snapshot(self, sdk: str) -> dict[str, Any]:
        """Counters for one SDK (JSON-ready)."""
        with self._lock:
            st = self._stats.get(sdk) or _new_stats()
            receipts = st["receipts"]
            return {
                "bench_unique": len(receipts),
                "bench_duplicates": sum(receipts.values()) - len(receipts),
                "bench_distinct_seq": len(st["bench_seq"]),
                "extra_unique": len(st["extra_receipts"]),
                "extra_duplicates": sum(st["extra_receipts"].values()) - len(st["extra_receipts"]),
                "extra_names": dict(st["extra_names"]),
                "events_without_id": st["no_id"],
                "posts": st["posts"],
                "preflights": st["preflights"],
                "gets": st["gets"],
                "request_bytes": st["request_bytes"],
                "body_bytes": st["body_bytes"],
                "refused": st["refused"],
                "paths": dict(st["paths"]),
                "first_at": st["first_at"],
                "last_at": st["last_at"],
                "last_new_at": st["last_new_at"],
                "max_events_per_request": st["max_events_per_request"],
            }

    def problems(self) -> dict[str, list[dict[str, Any]]]:
        """Requests to unknown paths and bodies that did not decode."""
        with self._lock:
            return {"unknown": list(self._unknown), "undecoded": list(self._undecoded)}

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` (called under the lock) is true; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.25))
            return True

    def wait_settled(self, sdk: str, expected: int, quiet_s: float, cap_s: float,
                     since: float | None = None, first_within_s: float | None = None) -> dict[str, Any]:
        """Wait until ``expected`` unique bench events arrived; or, once a
        bench event arrived after ``since``, nothing new for ``quiet_s``; or,
        with ``first_within_s``, no bench event at all that long after
        ``since``; or ``cap_s`` after ``since``. Returns the snapshot plus
        ``settled_by`` ("all", "quiet", "none" or "cap")."""
        start = time.monotonic() if since is None else since
        deadline = start + cap_s
        while True:
            snap = self.snapshot(sdk)
            now = time.monotonic()
            if snap["bench_unique"] >= expected:
                return dict(snap, settled_by="all")
            last = snap["last_new_at"]
            if last is not None and last > start and now - last >= quiet_s:
                return dict(snap, settled_by="quiet")
            if (last is None or last <= start) and first_within_s is not None and now - start >= first_within_s:
                return dict(snap, settled_by="none")
            if now >= deadline:
                return dict(snap, settled_by="cap")
            self.wait_for(lambda: False, min(0.25, deadline - now))

    # -- recording (called by the handler) ---------------------------------

    def _stat(self, sdk: str) -> dict[str, Any]:
        st = self._stats.get(sdk)
        if st is None:
            st = self._stats[sdk] = _new_stats()
        return st

    def _record(self, sdk: str, path: str, method: str, request_bytes: int, body_bytes: int,
                events: list[tuple[str | None, str | None, dict]]) -> None:
        now = time.monotonic()
        with self._lock:
            st = self._stat(sdk)
            st["paths"][f"{method} {path}"] += 1
            st["request_bytes"] += request_bytes
            st["body_bytes"] += body_bytes
            if method == "OPTIONS":
                st["preflights"] += 1
            elif method == "POST":
                st["posts"] += 1
            else:
                st["gets"] += 1
            st["first_at"] = st["first_at"] or now
            st["last_at"] = now
            new_bench = False
            st["max_events_per_request"] = max(st["max_events_per_request"], len(events))
            for message_id, name, props in events:
                if message_id is None:
                    st["no_id"] += 1
                    continue
                if isinstance(name, str) and name.startswith("bench"):
                    if message_id not in st["receipts"]:
                        new_bench = True
                    st["receipts"][message_id] += 1
                    if isinstance(props, dict):
                        st["bench_seq"].add((str(props.get("run")), str(props.get("i"))))
                else:
                    st["extra_receipts"][message_id] += 1
                    st["extra_names"][str(name)] += 1
            if new_bench:
                st["last_new_at"] = now
            self._changed.notify_all()

    def _refused(self, sdk: str | None) -> None:
        with self._lock:
            self._stat(sdk or "unknown")["refused"] += 1
            self._changed.notify_all()


def _reply_for(sdk: str, query: dict[str, list[str]], events: int, body_bytes: int) -> tuple[str, bytes]:
    if sdk == "posthog":
        return "application/json", b'{"status": 1}'
    if sdk == "segment":
        return "application/json", b'{"success": true}'
    if sdk == "amplitude":
        reply = {"code": 200, "events_ingested": events, "payload_size_bytes": body_bytes,
                 "server_upload_time": int(time.time() * 1000)}
        return "application/json", json.dumps(reply).encode()
    if sdk == "mixpanel":
        if query.get("verbose", ["0"])[0] == "1":
            return "application/json", b'{"status": 1, "error": null}'
        return "text/plain", b"1"
    # revu's own service (revu-ingest) says it takes gzip bodies; revu's
    # default compression: "auto" learns it from this reply.
    return "application/json", b'{"ok": true, "accept_encoding": ["gzip"]}'


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "revu-bench-sink/1"
    timeout = 60
    sink: Sink  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.close_connection = True

    # Offline: drop the connection before reading anything else.
    def _offline_drop(self, sdk: str | None) -> bool:
        if not self.sink.offline:
            return False
        self.sink._refused(sdk)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def _header_bytes(self) -> int:
        line = len(self.requestline) + 2
        return line + sum(len(k) + len(v) + 4 for k, v in self.headers.items()) + 2

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            n = int(length)
            if n > MAX_BODY_BYTES:
                raise ValueError("body too large")
            return self.rfile.read(n)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        self.send_header("Access-Control-Allow-Origin", origin or "*")
        if origin:
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")
        self.send_header("Access-Control-Expose-Headers", "Retry-After")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        path = urlsplit(self.path).path
        sdk = sdk_for_path(path)
        if self._offline_drop(sdk):
            return
        self.sink._record(sdk or "unknown", path, "OPTIONS", self._header_bytes(), 0, [])
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
        requested = self.headers.get("Access-Control-Request-Headers")
        if requested:
            self.send_header("Access-Control-Allow-Headers", requested)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        sdk = sdk_for_path(url.path)
        if self._offline_drop(sdk):
            return
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(413, "text/plain", b"too large\n")
            return
        query = parse_qs(url.query, keep_blank_values=True)
        request_bytes = self._header_bytes() + len(body)
        if sdk is None or (method == "GET" and "data" not in query):
            with self.sink._lock:
                self.sink._unknown.append({"method": method, "path": self.path[:300],
                                           "origin": self.headers.get("Origin")})
            self.sink._record(sdk or "unknown", url.path, method, request_bytes, len(body), [])
            self._send(404, "text/plain", b"not a bench endpoint\n")
            return
        try:
            payload = decode_body(body, self.headers, query) if body or "data" in query else None
        except (_Undecodable, ValueError) as exc:
            with self.sink._lock:
                self.sink._undecoded.append({"sdk": sdk, "path": self.path[:300], "error": str(exc)[:300],
                                             "content_type": self.headers.get("Content-Type"),
                                             "head": body[:80].decode("latin-1")})
            self.sink._record(sdk, url.path, method, request_bytes, len(body), [])
            self._send(400, "text/plain", b"undecodable body\n")
            return
        events = extract_events(sdk, payload)
        self.sink._record(sdk, url.path, method, request_bytes, len(body), events)
        content_type, reply = _reply_for(sdk, query, len(events), len(body))
        self._send(200, content_type, reply)
