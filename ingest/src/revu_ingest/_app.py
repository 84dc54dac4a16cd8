"""The ASGI app: routes, request handling, access log and metrics.

Layers, outermost first (``create_app``)::

    [outer hook]   the test fault layer's keep-alive switch, when enabled
    Observe        one structured log line and the metrics of every request
    Cors           preflights answered here; CORS headers on every reply
    [inner hook]   the test fault layer, when enabled (``revu_ingest.faults``)
    Starlette      /v1/behavior/events, /v1/chat/<room>/messages, /healthz, /readyz, /metrics

Nothing in a process matters for correctness: every decision that must hold
across processes (dedupe, duplicate counts, Idempotency-Key) is made by the
database in one transaction (``storage/_base.py``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _wire as wire
from ._config import Settings
from ._cors import ASGIApp, Cors, Receive, Scope, Send, header
from ._metrics import CONTENT_TYPE_LATEST, Metrics
from .storage import Storage, StorageError

access_log = logging.getLogger("revu_ingest.access")
log = logging.getLogger("revu_ingest")

# Every reply carries these.
_NO_STORE = {"Cache-Control": "no-store"}
RETRY_AFTER_UNAVAILABLE_S = "1"


def now_ms() -> int:
    return int(time.time() * 1000)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        wire.dumps(payload).encode("utf-8"),
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
        media_type="application/json",
    )


def error_response(exc: wire.WireError, headers: dict[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if exc.status == 413:
        extra["Connection"] = "close"  # the rest of the body is not read
    return json_response(exc.status, exc.body(), extra)


class ClientGone(Exception):
    """The client closed the connection before its body arrived."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body as received (still encoded), at most ``limit`` bytes.

    Raises:
        WireError: 413 when Content-Length or the bytes read pass ``limit``;
            400 for a Content-Length that is not a number.
        ClientGone: the client disconnected first.
    """
    raw = header(scope, b"content-length")
    if raw is not None:
        try:
            declared = int(raw)
        except ValueError:
            raise wire.WireError(400, "bad_request", "Content-Length is not an integer") from None
        if declared > limit:
            raise wire.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise wire.too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_info(scope: Scope) -> dict[str, Any]:
    """Per-request facts the handlers publish for the log, the metrics and
    the test fault layer's request log."""
    info = scope.get("revu")
    if info is None:
        info = scope["revu"] = {}
    return info


class Service:
    """The handlers, bound to one storage and one set of settings."""

    def __init__(self, settings: Settings, storage: Storage, metrics: Metrics) -> None:
        self.settings = settings
        self.storage = storage
        self.metrics = metrics
        self._keys = [k.encode("utf-8") for k in sorted(settings.api_keys)]

    def key_allowed(self, api_key: str | None) -> bool:
        if not self._keys:
            return True
        if not api_key:
            return False
        given = api_key.encode("utf-8", "surrogatepass")
        ok = False
        for key in self._keys:  # constant time per key; no early exit
            ok |= hmac.compare_digest(given, key)
        return ok

    def _refuse(self, info: dict[str, Any], exc: wire.WireError, outcome: str = "bad_request") -> Response:
        info.update(outcome=outcome, code=exc.code)
        self.metrics.requests_rejected.labels(exc.code).inc()
        return error_response(exc)

    # -- POST /v1/behavior/events -----------------------------------------

    async def post_events(self, request: Request) -> Response:
        info = request_info(request.scope)
        info["route"] = "events"
        limit = self.settings.max_body_bytes
        try:
            body = await read_body(request.scope, request.receive, limit)
        except wire.WireError as exc:
            return self._refuse(info, exc)
        except ClientGone:
            info["outcome"] = "client_gone"
            return json_response(400, {"ok": False, "code": "client_gone", "error": "client went away"})
        info["wire_bytes"] = len(body)
        try:
            decoded, encoding = wire.decode_body(body, request.headers.get("content-encoding"), limit)
        except wire.WireError as exc:
            return self._refuse(info, exc)
        info["content_encoding"] = encoding
        info["body_bytes"] = len(decoded)
        self.metrics.wire_bytes.labels(encoding).inc(len(body))
        parsed = wire.parse_events_body(decoded)
        if parsed.reason in ("invalid_json", "not_an_object"):
            return self._refuse(info, wire.WireError(400, "bad_request", parsed.error or "", parsed.reason))
        if not self.key_allowed(parsed.api_key):
            return self._refuse(
                info, wire.WireError(401, "unauthorized", "unknown or missing api_key"), outcome="unauthorized"
            )
        if parsed.error is not None:
            return self._refuse(info, wire.WireError(400, "bad_request", parsed.error, parsed.reason))
        if len(parsed.batch) > self.settings.max_batch_events:
            return self._refuse(
                info,
                wire.WireError(
                    413, "too_many_events", f"batch has more than {self.settings.max_batch_events} events"
                ),
            )
        checked = wire.check_batch(parsed.batch, texts=parsed.texts)
        assert parsed.api_key is not None
        try:
            result = await self.storage.store_events(
                parsed.api_key, checked.rows, now_ms(), request.scope.get("revu.request_seq")
            )
        except StorageError as exc:
            log.error("storage failed: %s", exc)
            info.update(outcome="unavailable", code="unavailable")
            self.metrics.requests_rejected.labels("unavailable").inc()
            return json_response(
                503,
                {"ok": False, "code": "unavailable", "error": "the database is unavailable; retry"},
                {"Retry-After": RETRY_AFTER_UNAVAILABLE_S},
            )
        received = len(checked.accepted)
        info.update(
            outcome="ok", events=len(parsed.batch), stored=result.stored,
            duplicates=result.duplicates, rejected=len(checked.rejected),
        )
        m = self.metrics
        m.events_received.inc(received)
        m.events_stored.inc(result.stored)
        if result.duplicates:
            m.events_duplicate.inc(result.duplicates)
        for item in checked.rejected:
            m.events_rejected.labels(item["code"]).inc()
        return json_response(200, wire.events_reply(checked.accepted, checked.rejected))

    # -- POST /v1/chat/<room>/messages ------------------------------------

    async def post_chat_message(self, request: Request) -> Response:
        info = request_info(request.scope)
        info["route"] = "chat"
        room = request.path_params["room"]
        if not wire.ROOM_RE.fullmatch(room):
            info["outcome"] = "not_found"
            return json_response(
                404, {"ok": False, "code": "not_found", "error": "room must be 1-64 characters of A-Z a-z 0-9 _ -"}
            )
        try:
            body = await read_body(request.scope, request.receive, self.settings.max_body_bytes)
        except wire.WireError as exc:
            return self._refuse(info, exc)
        except ClientGone:
            info["outcome"] = "client_gone"
            return json_response(400, {"ok": False, "code": "client_gone", "error": "client went away"})
        key = wire.idempotency_key(request.headers.getlist("idempotency-key"))
        if key is None:
            info.update(outcome="missing_key", effect="rejected", code="missing_idempotency_key")
            self.metrics.mutations.labels("rejected").inc()
            return json_response(400, dict(wire.MISSING_KEY_REPLY))
        parsed = wire.parse_message_body(body)
        try:
            result = await self.storage.apply_message(
                key, parsed.fingerprint(room), room, parsed.text, parsed.error, now_ms(),
                request.scope.get("revu.request_seq"),
            )
        except StorageError as exc:
            log.error("storage failed: %s", exc)
            info.update(outcome="unavailable", code="unavailable")
            return json_response(
                503,
                {"ok": False, "code": "unavailable", "error": "the database is unavailable; retry"},
                {"Retry-After": RETRY_AFTER_UNAVAILABLE_S},
            )
        outcome = {"applied": "applied", "replayed": "replayed", "recorded": "invalid", "rejected": "conflict"}
        info.update(outcome=outcome[result.effect], effect=result.effect, message_id=result.message_id)
        self.metrics.mutations.labels(result.effect).inc()
        return json_response(result.status, result.reply)

    async def post_mutations(self, request: Request) -> Response:
        request_info(request.scope)["route"] = "mutations"
        return json_response(
            501,
            {
                "ok": False,
                "code": "not_implemented",
                "error": f"{wire.MUTATIONS_PATH} is reserved; the idempotent endpoint is POST {wire.CHAT_MESSAGES_PATH}",
            },
        )

    # -- operations -------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        request_info(request.scope)["route"] = "healthz"
        return json_response(
            200,
            {
                "ok": True,
                "service": "revu-ingest",
                "events_path": wire.EVENTS_PATH,
                "messages_path": wire.CHAT_MESSAGES_PATH,
            },
        )

    async def readyz(self, request: Request) -> Response:
        request_info(request.scope)["route"] = "readyz"
        try:
            await self.storage.ping()
        except StorageError as exc:
            return json_response(503, {"ok": False, "code": "unavailable", "db": self.storage.backend, "error": str(exc)})
        return json_response(200, {"ok": True, "db": self.storage.backend})

    async def metrics_endpoint(self, request: Request) -> Response:
        request_info(request.scope)["route"] = "metrics"
        return Response(self.metrics.exposition(), headers=_NO_STORE, media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
        allow = ", ".join(sorted(allowed | {"OPTIONS"}))
        return json_response(
            405, {"ok": False, "code": "method_not_allowed", "error": f"{request.method} not allowed here"},
            {"Allow": allow},
        )
    if exc.status_code == 404:
        return json_response(404, {"ok": False, "code": "not_found", "error": f"no route for {request.url.path}"})
    return json_response(exc.status_code, {"ok": False, "code": "http_error", "error": str(exc.detail)})


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_response(500, {"ok": False, "code": "server_error", "error": repr(exc)})


class Observe:
    """One structured (JSON) access-log line and the metrics of each request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled
        self.pid = os.getpid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        info = request_info(scope)
        status: list[int] = []

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - t0
            route = info.get("route", "other")
            code = str(status[0]) if status else "none"
            self.metrics.requests.labels(route, code).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.enabled and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                line = {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
                    "msg": "request",
                    "pid": self.pid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status[0] if status else None,
                    "ms": round(seconds * 1000, 2),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    **{k: v for k, v in info.items() if k != "route"},
                }
                access_log.info(json.dumps(line, separators=(",", ":"), default=str))


def create_app(
    settings: Settings,
    storage: Storage,
    *,
    owns_storage: bool = True,
    wrap_inner: Callable[[ASGIApp], ASGIApp] | None = None,
    wrap_outer: Callable[[ASGIApp], ASGIApp] | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The service as an ASGI app.

    Args:
        settings: limits, keys, origins (``Settings``).
        storage: a ``Storage``; opened at start-up and closed at shutdown by
            the app's lifespan when ``owns_storage`` (else the caller does).
        wrap_inner / wrap_outer: hooks for the test fault layer (see the
            module docstring); None in production.
        metrics: a ``Metrics`` to fill (a fresh one by default).
    """
    metrics = metrics or Metrics()
    service = Service(settings, storage, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owns_storage:
            await storage.open()
        try:
            yield
        finally:
            if owns_storage:
                await storage.close()

    routes = [
        Route(wire.EVENTS_PATH, service.post_events, methods=["POST"]),
        Route(wire.MUTATIONS_PATH, service.post_mutations, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
    ]
    if settings.chat:
        routes.append(Route("/v1/chat/{room}/messages", service.post_chat_message, methods=["POST"]))
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app: ASGIApp = starlette
    if wrap_inner is not None:
        app = wrap_inner(app)
    app = Cors(app, settings.allowed_origins, settings.preflight_max_age_s)
    app = Observe(app, metrics, settings.access_log)
    if wrap_outer is not None:
        app = wrap_outer(app)
    return app
