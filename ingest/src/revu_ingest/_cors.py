"""CORS for page origins (an ASGI middleware).

Pages post from their own origin, so every request is a CORS request:
``application/json`` and ``Content-Encoding`` make a preflight necessary,
and ``sendBeacon`` sends credentials, so the allowed origin is echoed with
``Access-Control-Allow-Credentials: true`` (a credentialed request fails on
``*``: https://fetch.spec.whatwg.org/#cors-protocol-and-credentials).
A preflight (OPTIONS, any path) is answered here and cached by the browser
for ``max_age_s`` (Chromium caps it at 7200 s).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_METHODS = b"POST, GET, OPTIONS"
DEFAULT_ALLOW_HEADERS = b"Content-Type, Content-Encoding, Idempotency-Key"
EXPOSE_HEADERS = b"Retry-After"


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class Cors:
    def __init__(self, app: ASGIApp, allowed_origins: frozenset[str], max_age_s: int) -> None:
        self.app = app
        self.allowed = frozenset(o.encode("latin-1") for o in allowed_origins)
        self.max_age = str(max_age_s).encode()

    def _origin_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None:
            return [] if self.allowed else [(b"access-control-allow-origin", b"*")]
        if self.allowed and origin not in self.allowed:
            return []
        return [(b"access-control-allow-origin", origin), (b"access-control-allow-credentials", b"true")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        common = self._origin_headers(origin) + [
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        if scope["method"] == "OPTIONS":
            requested = header(scope, b"access-control-request-headers")
            headers = common + [
                (b"vary", b"Origin, Access-Control-Request-Headers"),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", requested or DEFAULT_ALLOW_HEADERS),
                (b"access-control-max-age", self.max_age),
                (b"access-control-allow-private-network", b"true"),
            ]
            info = scope.get("revu")
            if info is not None:
                info["route"] = "preflight"
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        extra = common + [(b"vary", b"Origin"), (b"access-control-allow-private-network", b"true")]

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, receive, send_with_cors)
