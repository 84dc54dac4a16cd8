"""Running the app under uvicorn: ``serve`` (one process or N workers on one
port) and ``ThreadedServer`` (in-process, on a thread, for the test harness).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import uvicorn

from ._app import create_app
from ._config import Settings
from .storage import make_storage

T = TypeVar("T")
log = logging.getLogger("revu_ingest")

_SETTINGS_ENV = "REVU_INGEST_SETTINGS"  # how workers (spawned processes) get the settings
KEEP_ALIVE_TIMEOUT_S = 60


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "revu_ingest.access":
            return record.getMessage()  # already one JSON object
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            line.update(extra)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(level: str = "info", access_log: bool = True) -> None:
    """JSON lines on stderr: one per request (``revu_ingest.access``), plus
    start-up, shutdown and errors (revu_ingest, uvicorn)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("revu_ingest.access").setLevel(logging.INFO if access_log else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def _uvicorn_config(app: Any, settings: Settings, *, factory: bool = False, workers: int = 1,
                    loop: str = "auto") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=factory,
        workers=workers,
        loop=loop,
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )


def build_app(settings: Settings) -> Any:
    """The production app (plus the fault layer with ``--test-faults``)."""
    storage = make_storage(
        settings.db_url, pool_min=settings.pool_min, pool_max=settings.pool_max, group_writes=settings.group_writes
    )
    if not settings.test_faults:
        return create_app(settings, storage)
    from .faults import FaultLayer

    layer = FaultLayer(settings, storage)
    return create_app(settings, storage, wrap_inner=layer.inner, wrap_outer=layer.outer)


def _settings_to_env(settings: Settings) -> str:
    data = dataclasses.asdict(settings)
    for key in ("allowed_origins", "api_keys"):
        data[key] = sorted(data[key])
    return json.dumps(data)


def _settings_from_env() -> Settings:
    data = json.loads(os.environ[_SETTINGS_ENV])
    for key in ("allowed_origins", "api_keys"):
        data[key] = frozenset(data[key])
    return Settings(**data)


def worker_app() -> Any:
    """The app factory each spawned worker calls (``--workers N``)."""
    settings = _settings_from_env()
    configure_logging(os.environ.get("REVU_INGEST_LOG_LEVEL", "info"), settings.access_log)
    return build_app(settings)


def serve(settings: Settings, log_level: str = "info") -> int:
    """Bind, log one start-up line, serve until SIGINT/SIGTERM, then finish the
    requests in flight (up to ``graceful_timeout_s``) and close the pool."""
    configure_logging(log_level, settings.access_log)
    make_storage(settings.db_url)  # a malformed URL fails here, before binding
    sock = bind_socket(settings.host, settings.port)
    log.info(
        "listening",
        extra={
            "fields": {
                "url": url_of(sock),
                "port": sock.getsockname()[1],
                "db": make_storage(settings.db_url).describe(),
                "workers": settings.workers,
                "api_keys": len(settings.api_keys)
                or "none configured: any non-empty api_key is accepted (pass --api-key to restrict)",
                "allowed_origins": sorted(settings.allowed_origins) or "any (echoed, with credentials)",
                "max_body_bytes": settings.max_body_bytes,
                "test_faults": settings.test_faults,
            }
        },
    )
    if settings.test_faults:
        log.warning("test fault layer enabled (--test-faults): /__control/ is open; never use this in production")
    if settings.workers == 1:
        server = uvicorn.Server(_uvicorn_config(build_app(settings), settings))
        server.run(sockets=[sock])
        return 0 if server.started else 3
    from uvicorn.supervisors import Multiprocess

    os.environ[_SETTINGS_ENV] = _settings_to_env(settings)
    os.environ["REVU_INGEST_LOG_LEVEL"] = log_level
    own_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_metrics_dir = tempfile.mkdtemp(prefix="revu-ingest-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    try:
        config = _uvicorn_config("revu_ingest._server:worker_app", settings, factory=True, workers=settings.workers)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return 0


class ThreadedServer:
    """uvicorn serving ``app`` on a daemon thread with its own event loop.

    ``start()`` returns once the socket accepts (tens of milliseconds);
    ``call(coro_fn)`` runs a coroutine on the server's loop from any thread.
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        settings: Settings,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.sock = sock
        config = _uvicorn_config(app, settings, loop="asyncio")
        config.lifespan = "off"  # the harness opens and closes the storage itself
        config.timeout_graceful_shutdown = 2
        self._server = uvicorn.Server(config)
        self._on_start = on_start
        self._on_stop = on_stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name=f"revu-ingest-{url_of(self.sock)}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"ingest server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            if not self._ready.is_set():
                self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        if self._on_start is not None:
            await self._on_start()
        try:
            server = self._server
            config = server.config
            if not config.loaded:
                config.load()
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[self.sock])
            if server.should_exit:
                raise RuntimeError("uvicorn failed to start")
            self._ready.set()
            await self._stop_event.wait()
            await self._shutdown()
        finally:
            if self._on_stop is not None:
                await self._on_stop()

    async def _shutdown(self) -> None:
        """Stop accepting, let requests in flight finish for up to 1 s, then
        cut what is left (a test that stops a server mid-delay must not wait)."""
        state = self._server.server_state
        for server in self._server.servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        deadline = time.monotonic() + 1.0
        while state.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.sleep(0)

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30.0) -> T:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("ingest server is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("call() from the server's own thread would deadlock")
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        loop, event = self._loop, getattr(self, "_stop_event", None)
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
