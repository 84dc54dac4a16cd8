"""The threaded HTTP server both demo servers run on."""

from __future__ import annotations

import socket
import sys
from http.server import ThreadingHTTPServer
from typing import Any


class DemoHTTPServer(ThreadingHTTPServer):
    """Threaded, reusable address, IPv6 when the host is one, and quiet about
    clients that hang up (a browser closing a keep-alive connection when a page
    closes or a test ends is normal here; anything else is still printed)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, app: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class ServerLifecycle:
    """``port``, ``url`` and the context-manager protocol for a server class
    that sets ``self.host`` and ``self._httpd`` and has ``start``/``stop``."""

    host: str
    _httpd: DemoHTTPServer | None

    def __enter__(self) -> Any:
        return self.start()  # type: ignore[attr-defined]

    def __exit__(self, *exc_info: object) -> None:
        self.stop()  # type: ignore[attr-defined]

    @property
    def port(self) -> int:
        """The bound port (after ``start()``)."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. "http://127.0.0.1:8787"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
