"""A small synchronous WebDriver BiDi client (the W3C protocol Firefox's
Remote Agent speaks on ``ws://127.0.0.1:<port>/session``).

One websocket, one reader thread. ``command()`` sends ``{"id", "method",
"params"}`` and blocks until the reply with that id arrives; events
(``{"type": "event", "method", "params"}``) go to the handlers registered
with ``on()``, which run on the reader thread and must not block on a
command (they may send one with ``send()``, fire and forget).

Only what the e2e facade needs lives here: the transport, errors, and the
conversion between Python values and BiDi ``LocalValue``/``RemoteValue``.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import defaultdict
from typing import Any, Callable

import websocket  # websocket-client (PyPI)

__all__ = ["BiDiConnection", "BiDiError", "JavaScriptError", "ConnectionClosed",
           "to_local_value", "from_remote_value"]


class BiDiError(RuntimeError):
    """The browser answered a command with an error."""

    def __init__(self, method: str, error: str, message: str) -> None:
        super().__init__(f"{method}: {error}: {message}")
        self.method, self.error, self.message = method, error, message


class ConnectionClosed(BiDiError):
    """The websocket closed (the browser exited or crashed)."""

    def __init__(self, method: str = "", message: str = "connection closed") -> None:
        super().__init__(method, "connection closed", message)


class JavaScriptError(RuntimeError):
    """A script evaluated in the page threw (or its promise rejected)."""


class BiDiConnection:
    def __init__(self, ws_url: str, timeout_s: float = 60.0) -> None:
        self._ws = websocket.create_connection(ws_url, timeout=timeout_s, enable_multithread=True,
                                                  suppress_origin=True)  # the Remote Agent refuses any Origin header
        self._ws.settimeout(None)  # the reader thread blocks until the socket closes
        self._ids = itertools.count(1)
        self._pending: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self._closed = False
        self.timeout_s = timeout_s
        self._reader = threading.Thread(target=self._read_loop, name="bidi-reader", daemon=True)
        self._reader.start()

    # -------------------------------------------------------------- commands

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a command without waiting for its reply; returns its id."""
        cid = next(self._ids)
        with self._cond:
            if self._closed:
                raise ConnectionClosed(method)
            self._pending[cid] = {}
        try:
            self._ws.send(json.dumps({"id": cid, "method": method, "params": params or {}}))
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionClosed(method, str(exc)) from exc
        return cid

    def wait(self, cid: int, method: str = "", timeout_s: float | None = None) -> dict[str, Any]:
        """The result of command ``cid``; raises ``BiDiError`` on an error reply."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending.get(cid) or self._closed, timeout):
                self._pending.pop(cid, None)
                raise TimeoutError(f"{method}: no reply within {timeout} s")
            reply = self._pending.pop(cid, None)
        if not reply:
            raise ConnectionClosed(method)
        if reply.get("type") == "error":
            raise BiDiError(method, reply.get("error", "?"), reply.get("message", ""))
        return reply.get("result", {})

    def command(self, method: str, params: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
        return self.wait(self.send(method, params), method, timeout_s)

    # ---------------------------------------------------------------- events

    def on(self, method: str, handler: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``handler(params)`` for every event ``method``; returns an unsubscribe function."""
        self._handlers[method].append(handler)
        return lambda: self._handlers[method].remove(handler) if handler in self._handlers[method] else None

    def _read_loop(self) -> None:
        try:
            while True:
                raw = self._ws.recv()
                if not raw:
                    break
                message = json.loads(raw)
                if "id" in message and message.get("type") in ("success", "error"):
                    with self._cond:
                        if message["id"] in self._pending:
                            self._pending[message["id"]] = message
                            self._cond.notify_all()
                elif message.get("type") == "event":
                    for handler in list(self._handlers.get(message["method"], ())):
                        try:
                            handler(message["params"])
                        except Exception as exc:  # a broken handler must not kill the reader
                            print(f"[bidi] handler for {message['method']} failed: {exc!r}")
                elif message.get("type") == "error":  # error without a command id
                    print(f"[bidi] protocol error: {message}")
        except (OSError, websocket.WebSocketException, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        try:
            self._ws.close()
        except (OSError, websocket.WebSocketException):
            pass
        self._reader.join(timeout=5)


# ------------------------------------------------------------------ values

def to_local_value(value: Any) -> dict[str, Any]:
    """A Python value as a BiDi LocalValue (JSON-like values only)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int) and abs(value) <= 2**53:
        return {"type": "number", "value": value}
    if isinstance(value, int):
        return {"type": "bigint", "value": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"type": "number", "value": "NaN"}
        if math.isinf(value):
            return {"type": "number", "value": "Infinity" if value > 0 else "-Infinity"}
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "value": [to_local_value(v) for v in value]}
    if isinstance(value, dict):
        return {"type": "object", "value": [[str(k), to_local_value(v)] for k, v in value.items()]}
    raise TypeError(f"cannot pass {type(value).__name__} to the page")


_SPECIAL_NUMBERS = {"NaN": math.nan, "-0": -0.0, "Infinity": math.inf, "-Infinity": -math.inf}


def from_remote_value(rv: dict[str, Any], _seen: dict[str, Any] | None = None) -> Any:
    """A BiDi RemoteValue as a Python value, as Playwright's evaluate() returns it:
    JSON-like values by value; undefined -> None; Map -> dict; Set -> list;
    Date and RegExp -> their string form; anything else (nodes, functions,
    windows, promises) -> a ``{"type": ...}`` placeholder. An object met
    twice in one result comes back as the same Python object (BiDi sends it
    once, then only its ``internalId``)."""
    seen = {} if _seen is None else _seen
    kind = rv.get("type")
    value = rv.get("value")
    internal_id = rv.get("internalId")
    if internal_id is not None and "value" not in rv and internal_id in seen:
        return seen[internal_id]
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean"):
        return value
    if kind == "number":
        return _SPECIAL_NUMBERS[value] if isinstance(value, str) else value
    if kind == "bigint":
        return int(value)
    if kind in ("array", "set"):
        out: Any = []
        if internal_id is not None:
            seen[internal_id] = out
        out.extend(from_remote_value(v, seen) for v in value or [])
        return out
    if kind in ("object", "map"):
        out = {}
        if internal_id is not None:
            seen[internal_id] = out
        for key, item in value or []:
            if isinstance(key, dict):
                key = from_remote_value(key, seen)
            out[key] = from_remote_value(item, seen)
        return out
    if kind == "date":
        return value
    if kind == "regexp":
        return f"/{value['pattern']}/{value.get('flags', '')}" if isinstance(value, dict) else value
    return {"type": kind}
