"""revu for a page written in Python (plain Pyodide, the wheel from dist/ via micropip).

    import micropip
    await micropip.install("/revu/revu-0.1.0-py3-none-any.whl")
    import revu
    revu.init("my-api-key", host="https://ingest.example.com")
    revu.record("signup", {"plan": "pro"})   # stored in localStorage on return
    await revu.flush()                        # True: everything queued was acked

The same core (``revu.Outbox``) runs in the page's own Pyodide: records are
stored in ``localStorage`` (one key per record; in memory where there is no
``localStorage``, e.g. Node, reported as ``durable: False``), requests go
through ``pyodide.http.pyfetch`` (``fetch``), timers through the asyncio loop
Pyodide runs on the browser's event loop. Limits (docs/python.md): one tab
per ``storage_key`` sends (there is no leader election between tabs here:
use distinct keys, or the JS shim, for several tabs), and no unload beacon
(what is stored leaves with the next page load of the same key).
"""

from __future__ import annotations

import asyncio
import gzip
import random
import uuid
from collections.abc import Callable
from typing import Any

from .. import _commands as c
from .. import _facts as f
from .._capture import CaptureError, capture_event
from .._config import CAPTURE_LIMITS, Config, consent_allows
from .._errors import UsageError
from .._outbox import Outbox
from ._common import RecordError, camel as _camel, now_ms as _now_ms

__all__ = ["Client", "RecordError", "UsageError", "init", "record", "flush", "status", "close", "on", "client"]

DEFAULT_STORAGE_KEY = "revu-py"
MAX_REPLY_BYTES = 1_000_000
_OPTION_NAMES = {"ttl_ms": "ttlMs"}


class MemoryStore:
    """The same interface as ``LocalStorageStore``, in memory (not durable)."""

    name = "memory"
    durable = False

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def get_all(self, prefix: str) -> list[tuple[str, str]]:
        return [(k[len(prefix):], v) for k, v in self.items.items() if k.startswith(prefix)]

    def set(self, key: str, value: str) -> None:
        self.items[key] = value

    def remove(self, key: str) -> None:
        self.items.pop(key, None)

    def get(self, key: str) -> str | None:
        return self.items.get(key)


class LocalStorageStore:
    """``window.localStorage``: synchronous, so a record is stored when
    ``record()`` returns. A write that throws (quota) raises ``OSError``."""

    name = "localStorage"
    durable = True

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def get_all(self, prefix: str) -> list[tuple[str, str]]:
        keys = [self.storage.key(i) for i in range(self.storage.length)]
        return [(k[len(prefix):], self.storage.getItem(k)) for k in keys
                if isinstance(k, str) and k.startswith(prefix)]

    def set(self, key: str, value: str) -> None:
        try:
            self.storage.setItem(key, value)
        except Exception as exc:  # a JsException (QuotaExceededError)
            raise OSError(f"localStorage.setItem failed: {exc}") from None

    def remove(self, key: str) -> None:
        self.storage.removeItem(key)

    def get(self, key: str) -> str | None:
        value = self.storage.getItem(key)
        return value if isinstance(value, str) else None


def _default_store() -> Any:
    try:
        import js

        storage = getattr(js, "localStorage", None)
        if storage is not None:
            storage.length  # noqa: B018 - throws where storage is disabled
            return LocalStorageStore(storage)
    except Exception:  # noqa: BLE001 - no window, or storage disabled
        pass
    return MemoryStore()


async def _post(send: c.Send, fetch: Any) -> f.Fact:
    """One request by ``fetch`` (``pyodide.http.pyfetch``); never raises."""
    headers = dict(send.headers)
    body: Any = send.body
    if send.encoding == "gzip":
        from pyodide.ffi import to_js

        body = to_js(gzip.compress(send.body.encode("utf-8")))
        headers["Content-Encoding"] = "gzip"
    try:
        reply = await asyncio.wait_for(
            fetch(send.url, method=send.method, headers=headers, body=body, keepalive=send.keepalive),
            send.timeout_ms / 1000)
        text = (await asyncio.wait_for(reply.string(), send.timeout_ms / 1000))[:MAX_REPLY_BYTES]
    except asyncio.TimeoutError:
        return f.SendFailed(now_ms=_now_ms(), batch_id=send.batch_id, status=None, error="timeout",
                            jitter=random.random())
    except Exception:  # noqa: BLE001 - AbortError (network), JsException
        return f.SendFailed(now_ms=_now_ms(), batch_id=send.batch_id, status=None, error="network_error",
                            jitter=random.random())
    if 200 <= reply.status < 300:
        return f.SendSucceeded(now_ms=_now_ms(), batch_id=send.batch_id, status=reply.status, reply=text)
    return f.SendFailed(now_ms=_now_ms(), batch_id=send.batch_id, status=reply.status, error=f"http_{reply.status}",
                        retry_after=reply.headers.get("retry-after"), jitter=random.random())


class Client:
    """One revu outbox in this page.

    Args:
        api_key: the project's API key.
        host: the ingest origin (``https://api.revu.ai``).
        storage_key: prefix of this client's localStorage keys.
        store: a store object (tests); default localStorage, else memory.
        fetch: an async ``fetch(url, **init)`` (tests); default ``pyodide.http.pyfetch``.
        **options: the core's options, snake_case or camelCase.

    Raises:
        UsageError: a bad option.
    """

    def __init__(self, api_key: str, *, host: str | None = None, storage_key: str = DEFAULT_STORAGE_KEY,
                 store: Any = None, fetch: Any = None, **options: Any) -> None:
        if not isinstance(storage_key, str) or not storage_key:
            raise UsageError("storage_key must be a non-empty string")
        camel = {_camel(k): v for k, v in options.items()}
        camel["apiKey"] = api_key
        if host is not None:
            camel["host"] = host
        self.config = Config.from_options(camel)
        self._queue_prefix = f"{storage_key}:q:"
        self._dead_prefix = f"{storage_key}:d:"
        self._quarantine_prefix = f"{storage_key}:x:"
        self.store = store if store is not None else _default_store()
        if fetch is None:
            from pyodide.http import pyfetch as fetch
        self._fetch = fetch
        self._outbox = Outbox(self.config)
        self._loop = asyncio.get_event_loop()
        self._timers: dict[str, Any] = {}
        self._flushes: dict[str, asyncio.Future] = {}
        self._flush_seq = 0
        self._listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._status: dict[str, Any] = {}
        self._seq = 0
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        records = [{"id": k, "raw": v} for k, v in self.store.get_all(self._queue_prefix)]
        dead = [{"id": k, "raw": v} for k, v in self.store.get_all(self._dead_prefix)]
        self._handle([f.Restored(now_ms=_now_ms(), records=tuple(records), dead_letters=tuple(dead),
                                 durable=self.store.durable, storage=self.store.name, consent=self.config.consent)])

    def record(self, event: str, properties: dict[str, Any] | None = None, **options: Any) -> str | None:
        """Record an event: checked, stored and queued (see the CPython
        runtime's ``Client.record``; same rules and errors)."""
        if self._closed:
            raise UsageError("revu: record() after close()")
        opts = {_OPTION_NAMES.get(k, k): v for k, v in options.items()}
        if opts.get("pii") not in (None, False):
            raise RecordError("pii_unsupported", "revu (Pyodide): pii events are not supported by the Python "
                                                 "page runtime (use the JS shim, which seals them)")
        now = _now_ms()
        self._seq = max(now * 1000, self._seq + 1)
        try:
            captured = capture_event(event, properties, opts or None, event_id=str(uuid.uuid4()), now_ms=now,
                                     seq=self._seq, limits=CAPTURE_LIMITS,
                                     max_event_bytes=self.config.max_event_bytes)
        except CaptureError as exc:
            raise RecordError(exc.code, str(exc)) from None
        if not consent_allows(self._status.get("consent", self.config.consent), captured.category):
            return None
        durable = True
        try:
            self.store.set(self._queue_prefix + captured.event_id, captured.raw)
        except OSError as exc:
            durable = False
            self._handle([f.StorageFailed(now_ms=now, operation="write", error=str(exc)[:200])])
        self._handle([f.Recorded(now_ms=now, record=captured.raw, durable=durable and self.store.durable)])
        return captured.event_id

    async def flush(self, timeout: float = 10.0) -> bool:
        """True when everything queued at the call was acknowledged; False on
        the first failed request, a dead letter, or after ``timeout`` s."""
        if self._closed:
            return False
        self._flush_seq += 1
        flush_id = f"f{self._flush_seq}"
        future = self._loop.create_future()
        self._flushes[flush_id] = future
        self._handle([f.FlushRequested(now_ms=_now_ms(), flush_id=flush_id)])
        try:
            return bool(await asyncio.wait_for(asyncio.shield(future), timeout))
        except asyncio.TimeoutError:
            return False
        finally:
            self._flushes.pop(flush_id, None)

    def status(self) -> dict[str, Any]:
        """The core's status snapshot (``queued``, ``acked``, ``durable``...)."""
        return dict(self._status)

    def on(self, name: str, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``fn(detail)`` for each ``name`` event; returns an unsubscribe function."""
        self._listeners.setdefault(name, []).append(fn)

        def off() -> None:
            if fn in self._listeners.get(name, []):
                self._listeners[name].remove(fn)
        return off

    def close(self) -> None:
        """Stop timers and sends; what is queued stays stored."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for future in self._flushes.values():
            if not future.done():
                future.set_result(False)

    # -- commands ---------------------------------------------------------------

    def _handle(self, facts: list[f.Fact]) -> None:
        if self._closed:
            return
        for command in self._outbox.handle_all(facts):
            try:
                self._execute(command)
            except Exception as exc:  # noqa: BLE001 - reported, the others still run
                self._emit("error", {"code": "command_failed", "message": f"{type(command).__name__}: {exc}"})

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self._handle([f.TimerFired(now_ms=_now_ms(), key=key)])

    async def _send(self, cmd: c.Send) -> None:
        outcome = await _post(cmd, self._fetch)
        self._handle([outcome])

    def _execute(self, cmd: c.Command) -> None:
        if isinstance(cmd, c.Send):
            task = self._loop.create_task(self._send(cmd))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(cmd, c.Delete):
            for event_id in cmd.event_ids:
                self.store.remove(self._queue_prefix + event_id)
        elif isinstance(cmd, c.StoreDeadLetters):
            import json

            for entry in cmd.entries:
                event_id = entry["env"]["event_id"]
                self.store.set(self._dead_prefix + event_id, json.dumps(entry, separators=(",", ":")))
                self.store.remove(self._queue_prefix + event_id)
        elif isinstance(cmd, c.Requeue):
            import json

            for record in cmd.records:
                event_id = record["env"]["event_id"]
                self.store.set(self._queue_prefix + event_id, json.dumps(record, separators=(",", ":")))
                self.store.remove(self._dead_prefix + event_id)
        elif isinstance(cmd, c.DeleteDeadLetters):
            for event_id in cmd.event_ids:
                self.store.remove(self._dead_prefix + event_id)
        elif isinstance(cmd, c.Quarantine):
            for entry in cmd.entries:
                prefix = self._dead_prefix if entry.get("area") == "dead" else self._queue_prefix
                value = self.store.get(prefix + entry["id"])
                self.store.remove(prefix + entry["id"])
                if value is not None:
                    self.store.set(self._quarantine_prefix + entry["id"], value[:100_000])
        elif isinstance(cmd, c.SetTimer):
            old = self._timers.pop(cmd.key, None)
            if old is not None:
                old.cancel()
            delay_s = max(0.0, (cmd.at_ms - _now_ms()) / 1000)
            self._timers[cmd.key] = self._loop.call_later(delay_s, self._fire, cmd.key)
        elif isinstance(cmd, c.CancelTimer):
            old = self._timers.pop(cmd.key, None)
            if old is not None:
                old.cancel()
        elif isinstance(cmd, c.SettleFlush):
            future = self._flushes.get(cmd.flush_id)
            if future is not None and not future.done():
                future.set_result(cmd.ok)
        elif isinstance(cmd, c.Emit):
            self._emit(cmd.name, cmd.detail)
        elif isinstance(cmd, c.ReportStatus):
            self._status = cmd.status
        elif isinstance(cmd, (c.PublishRules, c.Log)):
            if isinstance(cmd, c.Log) and (self.config.debug or cmd.level in ("warn", "error")):
                print(f"[revu] {cmd.level}: {cmd.message}")
        elif isinstance(cmd, c.Halt):
            self.close()
        else:
            raise UsageError(f"unknown command {type(cmd).__name__}")

    def _emit(self, name: str, detail: Any) -> None:
        for fn in list(self._listeners.get(name, ())):
            try:
                fn(detail)
            except Exception as exc:  # noqa: BLE001 - a listener's bug is its own
                print(f"[revu] error: an {name!r} listener raised {exc!r}")


# -- module-level API: one default client per page ------------------------------

_client: Client | None = None


def init(api_key: str, *, host: str | None = None, **options: Any) -> Client:
    """Start the page's default client (see ``Client``).

    Raises:
        UsageError: bad options, or ``init`` called twice without ``close``.
    """
    global _client
    if _client is not None:
        raise UsageError("revu.init() was already called; call revu.close() first")
    _client = Client(api_key, host=host, **options)
    return _client


def client() -> Client:
    """The default client. Raises UsageError before ``init``."""
    if _client is None:
        raise UsageError("call revu.init(api_key, ...) first")
    return _client


def record(event: str, properties: dict[str, Any] | None = None, **options: Any) -> str | None:
    """``Client.record`` on the default client."""
    return client().record(event, properties, **options)


async def flush(timeout: float = 10.0) -> bool:
    """``Client.flush`` on the default client (a coroutine: ``await revu.flush()``)."""
    return await client().flush(timeout)


def status() -> dict[str, Any]:
    """``Client.status`` on the default client."""
    return client().status()


def on(name: str, fn: Callable[[Any], None]) -> Callable[[], None]:
    """``Client.on`` on the default client."""
    return client().on(name, fn)


def close() -> None:
    """Close the default client; a later ``init`` starts a new one."""
    global _client
    current, _client = _client, None
    if current is not None:
        current.close()
