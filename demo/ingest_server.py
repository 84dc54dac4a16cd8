"""The ingest service with the test fault layer, in-process: the harness the
tests, the demo and the benchmarks use.

It runs the real service (``revu_ingest``: the Starlette app under uvicorn,
SQLite or PostgreSQL storage) on a background thread, with the fault layer
(``revu_ingest.faults``) added, and gives Python access to what the
``/__control/`` endpoints give over HTTP:

    GET  /__control/state    what was received (events, counters, request log)
    POST /__control/faults   script failures, go offline, poison events, delay
    POST /__control/reset    forget everything, clear faults
    GET  /__control/faults   the current fault config

``IngestServer.state()``, ``.set_faults()``, ``.reset()``, ``.faults()`` and
``.wait_until()`` are the same operations in-process. docs/ingest.md
("Test fault layer") describes every switch, the order in which they apply,
the request log and the mutation endpoint; demo/README.md has a summary.

CLI (the demo's ingest, quiet unless --verbose):

    python demo/ingest_server.py --host 127.0.0.1 --port 8787 \\
        --db demo/revu-demo.sqlite3 [--verbose]

The production server is ``revu-ingest serve`` (no fault layer).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from revu_ingest import Settings, create_app, make_storage
from revu_ingest._server import ThreadedServer, bind_socket, configure_logging
from revu_ingest._wire import CHAT_MESSAGES_PATH, DEFAULT_MAX_BODY_BYTES, EVENTS_PATH, MUTATIONS_PATH
from revu_ingest.faults import FaultLayer

__all__ = ["IngestServer", "EVENTS_PATH", "MUTATIONS_PATH", "CHAT_MESSAGES_PATH", "main"]


def sqlite_url(db_path: str) -> str:
    """``":memory:"`` or a file path -> a sqlite:/// URL."""
    if db_path == ":memory:":
        return "sqlite:///:memory:"
    return "sqlite:///" + str(Path(db_path).resolve())


class IngestServer:
    """The ingest service plus the test fault layer, on a background thread.

    Args:
        host: interface to bind.
        port: TCP port; 0 picks a free one (read ``.port``).
        db_path: SQLite file, or ":memory:" (the default) for a throwaway store.
        verbose: log one JSON line per request to stderr.
        max_body_bytes: larger request bodies (wire or decoded) get 413.
        db_url: a database URL instead of ``db_path``
            (``postgresql://...`` or ``sqlite:///...``).
        api_keys / allowed_origins: as ``revu-ingest serve --api-key /
            --allow-origin`` (default: any).

    Use as a context manager or call ``start()`` / ``stop()``. All accessors
    are thread-safe. Start-up takes tens of milliseconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str = ":memory:",
        *,
        verbose: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        db_url: str | None = None,
        api_keys: tuple[str, ...] | frozenset[str] = (),
        allowed_origins: tuple[str, ...] | frozenset[str] = (),
    ) -> None:
        self.host = host
        self.db_path = str(db_path)
        self.db_url = db_url or sqlite_url(self.db_path)
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self._requested_port = port
        self.settings = Settings(
            db_url=self.db_url,
            host=host,
            port=port,
            max_body_bytes=max_body_bytes,
            api_keys=frozenset(api_keys),
            allowed_origins=frozenset(allowed_origins),
            access_log=verbose,
            test_faults=True,
        )
        self._changed = threading.Condition()
        self._storage = make_storage(self.db_url)
        self._layer = FaultLayer(self.settings, self._storage, on_change=self._notify)
        self._server: ThreadedServer | None = None
        self._port: int | None = None
        self._closed = False
        self._lock = threading.Lock()
        if verbose:
            configure_logging("info", access_log=True)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "IngestServer":
        """Bind, open the database and serve in a daemon thread.

        Returns:
            self, so ``srv = IngestServer().start()`` works.

        Raises:
            RuntimeError: if already started or stopped, or the service failed to start.
            OSError: if the address cannot be bound.
            revu_ingest.StorageError: if the database cannot be opened.
        """
        with self._lock:
            if self._server is not None or self._closed:
                raise RuntimeError("IngestServer can be started once; make a new one")
            sock = bind_socket(self.host, self._requested_port)
            self._port = sock.getsockname()[1]
            app = create_app(
                self.settings, self._storage, owns_storage=False,
                wrap_inner=self._layer.inner, wrap_outer=self._layer.outer,
            )
            self._server = ThreadedServer(app, sock, self.settings, on_start=self._storage.open,
                                          on_stop=self._storage.close)
        try:
            self._server.start()
        except BaseException:
            self._closed = True
            sock.close()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, close the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            server = self._server
        if server is not None:
            server.stop()
            server.sock.close()
        self._notify()

    def __enter__(self) -> "IngestServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after ``start()``)."""
        if self._port is None:
            raise RuntimeError("IngestServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. "http://127.0.0.1:8787"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH

    def messages_url(self, room: str) -> str:
        """URL of the idempotent chat endpoint for ``room``."""
        return self.url + CHAT_MESSAGES_PATH.format(room=room)

    # -- accessors (same data as the control endpoints) --------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self._server is None or self._closed:
            raise RuntimeError("IngestServer is stopped")
        return self._server.call(fn)

    def state(self, tail: int | None = None) -> dict[str, Any]:
        """What the server has received; the body of GET /__control/state.

        Args:
            tail: if given, only the last ``tail`` events, messages and
                requests are listed (counters still cover everything).

        Returns:
            {"events", "unique", "duplicates", "received_total",
             "envelopes_seen", "requests_total", "requests", "faults",
             "messages", "mutation_replays"} (docs/ingest.md).
        """
        return self._call(lambda: self._layer.state(tail))

    def faults(self) -> dict[str, Any]:
        """The current fault config (a copy)."""
        return self._layer.faults()

    def set_faults(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Change fault switches; absent keys stay as they are.

        Returns:
            The resulting fault config.

        Raises:
            ValueError: if a key is unknown or a value has the wrong type;
                nothing is changed then.
        """
        return self._layer.set_faults(update)

    def reset(self) -> None:
        """Forget every event, message, idempotency key, counter and logged
        request; clear all faults (event and mutation)."""
        self._call(self._layer.reset)

    def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Block until ``predicate(state())`` is true.

        Re-evaluated whenever a request starts or finishes, or the config
        changes (and at least every 0.2 s: another process may write to the
        same database).

        Returns:
            The state that satisfied the predicate.

        Raises:
            TimeoutError: with a short summary of the last state.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.state()
            if predicate(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"ingest state not reached in {timeout_s}s: unique={current['unique']} "
                    f"duplicates={current['duplicates']} requests={current['requests_total']} "
                    f"messages={len(current['messages'])} mutation_replays={current['mutation_replays']}"
                )
            with self._changed:
                self._changed.wait(min(remaining, 0.2))


# --------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="revu ingest service with the test fault layer (tests and demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--db", default=":memory:", help='SQLite file, ":memory:" (default), or a database URL')
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    url = args.db if "://" in args.db else None
    server = IngestServer(args.host, args.port, args.db if url is None else ":memory:", verbose=args.verbose,
                          db_url=url).start()
    print(
        f"revu ingest listening on {server.url}  (POST {EVENTS_PATH}, POST {CHAT_MESSAGES_PATH}, db: {args.db})",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


logging.getLogger("revu_ingest").addHandler(logging.NullHandler())

if __name__ == "__main__":
    sys.exit(main())
