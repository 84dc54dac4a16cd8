"""Reference ingest server for revu, with fault switches for tests.

It implements the wire contract in DESIGN.md ("The wire contract"):

    POST /v1/behavior/events   {"api_key": "...", "batch": [envelope, ...]}
      200 {"ok": true, "accepted": [event_id, ...],
           "rejected": [{"event_id": ..., "code": ...}]}

Events are stored in SQLite keyed on ``event_id`` (the idempotency key), so a
re-sent event is a no-op success that is counted as a duplicate ("duplicates
received before dedupe", which the e2e tests report).

Test switches live under ``/__control/``:

    GET  /__control/state    what was received (events, counters, request log)
    POST /__control/faults   script failures, go offline, poison events, delay
    POST /__control/reset    forget everything, clear faults
    GET  /__control/faults   the current fault config

It also has one endpoint that honours idempotency keys, for the SDK's mutation
outbox ("Mutation endpoint" below):

    POST /v1/chat/<room>/messages   {"text": "..."}  + header Idempotency-Key
      200 {"ok": true, "emitId": key, "message_id": n, "replayed": false}

The same operations are available in-process: ``IngestServer.state()``,
``.set_faults()``, ``.reset()``, ``.faults()`` and ``.wait_until()``.

Faults apply to ``POST /v1/behavior/events`` only, never to CORS preflights or
control endpoints. The order of evaluation for an event request is:

1. ``offline``: close the connection at once, no reply, nothing stored,
   no script step consumed.
2. Take the next ``script`` step, if any, then sleep ``step.delay_ms`` (or the
   default ``delay_ms``).
3. ``drop_reply`` step: process the batch as usual (storing per ``store``),
   then close the connection without writing a reply ("ack loss").
4. Non-2xx step: reply ``{"ok": false, "code": "fault_<status>"}``; the
   batch is stored only if the step says ``store: true``.
5. Otherwise (no step, or a 2xx step): normal processing. Malformed body ->
   400, a poison event in the batch -> 422, else per-envelope validation,
   ``reject_ids``, storage (unless ``store: false``) and the 2xx reply.

Browser note: Chromium transparently resends a request once when a *reused*
keep-alive connection closes before any response header arrives, so with
``drop_reply`` or ``offline`` the page may not see the first failure (the
request log shows both attempts). Set the fault ``keep_alive: false`` to
answer every request with ``Connection: close``; then no connection is
reused and every dropped reply surfaces to the page as a network error.

Mutation endpoint. ``POST /v1/chat/<room>/messages`` (room: 1-64 characters
of ``[A-Za-z0-9_-]``, else 404) appends a chat message exactly once per
``Idempotency-Key`` (1-200 printable ASCII characters). Keys are global (not
per room) and remembered in SQLite with the reply they got:

- no valid key -> 400 ``{"ok": false, "code": "missing_idempotency_key"}``,
  nothing applied or remembered;
- new key, body not a JSON object or ``text`` not a non-empty string -> 422
  ``{"ok": false, "code": "invalid_message"}``; nothing applied, but the key
  and reply are remembered, so a retry gets the same 422;
- new key, valid body -> the message is appended (``message_id`` global 1, 2,
  3 ..., ``seq_in_room`` 1, 2, 3 ... per room) and 200
  ``{"ok": true, "emitId": key, "message_id": n, "replayed": false}``;
- known key, same room and ``text`` -> the remembered reply again (a 200 one
  with ``"replayed": true``), nothing applied, ``mutation_replays`` + 1;
- known key, other room or ``text`` -> 409
  ``{"ok": false, "code": "idempotency_key_reused"}``, nothing applied.

Error replies also carry an ``"error"`` string. Check-and-apply runs under
the server lock in one SQLite transaction, so concurrent requests with one key
apply once. Mutation requests have their own faults, which never touch event
requests' (and the reverse): ``mutation_offline`` (close at once, nothing
applied, no step consumed), ``mutation_script`` (same step shape as
``script``; ``store`` means "apply"; ``reject_ids`` is ignored) and
``mutation_delay_ms``. The delay is slept *before* applying. ``drop_reply``
applies (if ``store``) and closes without a reply; a step that does not apply
(non-2xx by default, or ``store: false``) replies ``<status>``
``{"ok": false, "code": "fault_<status>"}``; a non-2xx step with
``store: true`` applies and still replies with the fault. ``keep_alive`` is
shared by both kinds.

``POST /v1/mutations`` stays reserved and answers 501: the outbox posts to any
URL, and the chat endpoint above is the reference for it.

CLI:

    python demo/ingest_server.py --host 127.0.0.1 --port 8787 \\
        --db demo/revu-demo.sqlite3 [--verbose]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sqlite3
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

try:
    from demo._http import DemoHTTPServer, ServerLifecycle
except ImportError:  # run as a script: demo/ itself is on sys.path
    from _http import DemoHTTPServer, ServerLifecycle  # type: ignore[no-redef]

__all__ = ["IngestServer", "EVENTS_PATH", "MUTATIONS_PATH", "CHAT_MESSAGES_PATH", "main"]

EVENTS_PATH = "/v1/behavior/events"
# Reserved: a generic mutation endpoint. The outbox posts to any URL, so the
# reference for it is CHAT_MESSAGES_PATH; this one still answers a clear 501
# rather than a 404.
MUTATIONS_PATH = "/v1/mutations"
# The reference mutation endpoint: POST with an Idempotency-Key header, applied
# once per key, replays answered with the stored result. "{room}" is 1-64
# characters of [A-Za-z0-9_-].
CHAT_MESSAGES_PATH = "/v1/chat/{room}/messages"
_CHAT_MESSAGES_RE = re.compile(r"/v1/chat/([^/]*)/messages")
_ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,200}")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Keep-alive connections idle longer than this are closed, so handler threads
# do not pile up.
IDLE_TIMEOUT_S = 60

PREFLIGHT_ALLOW_METHODS = "POST, GET, OPTIONS"
PREFLIGHT_ALLOW_HEADERS = "Content-Type, Idempotency-Key"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    api_key        TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    properties     TEXT    NOT NULL,
    envelope       TEXT    NOT NULL,
    created_at     INTEGER,
    sent_at        INTEGER,
    stream         TEXT,
    received_at_ms INTEGER NOT NULL,
    request_seq    INTEGER NOT NULL,
    receipts       INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    message_id      INTEGER PRIMARY KEY,
    room            TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    at_ms           INTEGER NOT NULL,
    seq_in_room     INTEGER NOT NULL,
    request_seq     INTEGER NOT NULL,
    UNIQUE (room, seq_in_room)
);
CREATE TABLE IF NOT EXISTS mutation_keys (
    idempotency_key TEXT    PRIMARY KEY,
    fingerprint     TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    reply           TEXT    NOT NULL,
    message_id      INTEGER,
    at_ms           INTEGER NOT NULL
);
"""

# Counters that live in SQLite next to the events, so a restarted server on the
# same file reports consistent numbers.
_PERSISTED_COUNTERS = ("duplicates", "received_total", "request_seq", "mutation_replays")

_STEP_KEYS = {"status", "retry_after", "delay_ms", "store", "drop_reply", "reject_ids"}
_FAULT_KEYS = {
    "script",
    "offline",
    "poison_events",
    "delay_ms",
    "keep_alive",
    "mutation_script",
    "mutation_offline",
    "mutation_delay_ms",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; storing them would make state() unparseable.
    raise ValueError(f"{name} is not valid JSON")


def _loads(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)


def _json_object(body: bytes) -> tuple[Any, str | None]:
    """The body as a JSON object, or why it is not one."""
    try:
        obj = _loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"body is not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return obj, "body must be a JSON object"
    return obj, None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------
# Fault config


def _default_faults() -> dict[str, Any]:
    return {
        "script": [],
        "offline": False,
        "poison_events": [],
        "delay_ms": 0,
        "keep_alive": True,
        "mutation_script": [],
        "mutation_offline": False,
        "mutation_delay_ms": 0,
    }


def _normalize_step(step: Any, index: int, name: str = "script") -> dict[str, Any]:
    where = f"{name}[{index}]"
    if not isinstance(step, Mapping):
        raise ValueError(f"{where} must be an object")
    unknown = set(step) - _STEP_KEYS
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_STEP_KEYS)}")
    status = step.get("status", 200)
    if not _is_int(status) or not 200 <= status <= 599:
        raise ValueError(f"{where}.status must be an integer HTTP status 200..599")
    retry_after = step.get("retry_after")
    if _is_int(retry_after):
        retry_after = str(retry_after)
    if retry_after is not None and not isinstance(retry_after, str):
        raise ValueError(f"{where}.retry_after must be a string, an integer or null")
    delay_ms = step.get("delay_ms")
    if delay_ms is not None and (not _is_int(delay_ms) or delay_ms < 0):
        raise ValueError(f"{where}.delay_ms must be a non-negative integer or null")
    store = step.get("store")
    if store is None:
        store = 200 <= status < 300
    if not isinstance(store, bool):
        raise ValueError(f"{where}.store must be a boolean")
    drop_reply = step.get("drop_reply", False)
    if not isinstance(drop_reply, bool):
        raise ValueError(f"{where}.drop_reply must be a boolean")
    reject_ids = step.get("reject_ids", [])
    if not isinstance(reject_ids, list) or not all(isinstance(i, str) for i in reject_ids):
        raise ValueError(f"{where}.reject_ids must be a list of strings")
    return {
        "status": status,
        "retry_after": retry_after,
        "delay_ms": delay_ms,  # null: use the default delay_ms
        "store": store,
        "drop_reply": drop_reply,
        "reject_ids": list(reject_ids),
    }


def _normalize_fault_update(update: Any) -> dict[str, Any]:
    """Validate a (partial) fault config; returns only the keys given."""
    if not isinstance(update, Mapping):
        raise ValueError("faults must be a JSON object")
    unknown = set(update) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault keys {sorted(unknown)}; allowed: {sorted(_FAULT_KEYS)}")
    out: dict[str, Any] = {}
    for name in ("script", "mutation_script"):
        if name in update:
            script = update[name]
            if script is None:
                script = []
            if not isinstance(script, list):
                raise ValueError(f"{name} must be a list of steps")
            out[name] = [_normalize_step(step, i, name) for i, step in enumerate(script)]
    for key in ("offline", "keep_alive", "mutation_offline"):
        if key in update:
            if not isinstance(update[key], bool):
                raise ValueError(f"{key} must be a boolean")
            out[key] = update[key]
    if "poison_events" in update:
        names = update["poison_events"]
        if names is None:
            names = []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("poison_events must be a list of event names")
        out["poison_events"] = list(names)
    for key in ("delay_ms", "mutation_delay_ms"):
        if key in update:
            delay_ms = update[key]
            if not _is_int(delay_ms) or delay_ms < 0:
                raise ValueError(f"{key} must be a non-negative integer")
            out[key] = delay_ms
    return out


def _copy_faults(faults: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(faults))


# --------------------------------------------------------------------------
# Request body parsing


class _BodyError(Exception):
    """The request body could not be read; the connection must close."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Stopped(RuntimeError):
    """The server was stopped while a request was being handled."""


class _Parsed:
    """A POST /v1/behavior/events body, parsed as far as it goes."""

    def __init__(self, body: bytes) -> None:
        self.obj: Any = None
        self.error: str | None = None
        self.api_key: str | None = None
        self.batch: list[Any] = []
        self.obj, self.error = _json_object(body)
        if self.error is not None:
            return
        api_key = self.obj.get("api_key")
        if isinstance(api_key, str) and api_key:
            self.api_key = api_key
        batch = self.obj.get("batch")
        if isinstance(batch, list):
            self.batch = batch
        if "api_key" not in self.obj:
            self.error = "api_key is missing"
        elif not isinstance(api_key, str):
            self.error = "api_key must be a string"
        elif not api_key:
            self.error = "api_key is empty"
        elif not isinstance(batch, list):
            self.error = "batch must be a list" if "batch" in self.obj else "batch is missing"

    @property
    def body_keys(self) -> list[str]:
        return sorted(self.obj) if isinstance(self.obj, dict) else []

    @property
    def event_ids(self) -> list[str]:
        return [
            env["event_id"]
            for env in self.batch
            if isinstance(env, dict) and isinstance(env.get("event_id"), str)
        ]


def _envelope_problem(env: Any) -> str | None:
    if not isinstance(env, dict):
        return "envelope is not an object"
    if not isinstance(env.get("event_id"), str) or not env["event_id"]:
        return "event_id must be a non-empty string"
    if not isinstance(env.get("event"), str) or not env["event"]:
        return "event must be a non-empty string"
    return None


def _echo_id(env: Any) -> Any:
    """The event_id to report for a rejected envelope (JSON scalars only)."""
    if isinstance(env, dict):
        value = env.get("event_id")
        if value is None or isinstance(value, (str, int, float)):
            return value
    return None


class _MutationBody:
    """A POST /v1/chat/<room>/messages body: ``{"text": str, ...any}``."""

    def __init__(self, body: bytes) -> None:
        self.obj: Any = None
        self.error: str | None = None
        self.text: str | None = None
        self.obj, self.error = _json_object(body)
        if self.error is not None:
            return
        text = self.obj.get("text")
        if not isinstance(text, str) or not text:
            self.error = "text must be a non-empty string"
            return
        self.text = text

    @property
    def body_keys(self) -> list[str]:
        return sorted(self.obj) if isinstance(self.obj, dict) else []

    def fingerprint(self, room: str) -> str:
        """What a retry must repeat to be a replay: the room and ``text``
        (whatever its JSON value; absent or an unparsable body count as null)."""
        text = self.obj.get("text") if isinstance(self.obj, dict) else None
        return json.dumps([room, text], separators=(",", ":"), sort_keys=True)


def _room_of(path: str) -> str | None:
    """The room of a chat-messages path, "" if the path has that shape but
    the room is not valid, None for any other path."""
    match = _CHAT_MESSAGES_RE.fullmatch(path)
    if match is None:
        return None
    room = match.group(1)
    return room if _ROOM_RE.fullmatch(room) else ""


# --------------------------------------------------------------------------
# The server


class IngestServer(ServerLifecycle):
    """The reference ingest endpoint, run in a background thread.

    Args:
        host: interface to bind.
        port: TCP port; 0 picks a free one (read ``.port`` after ``start()``).
        db_path: SQLite file, or ":memory:" (the default) for a throwaway store.
        verbose: log one line per request to stderr.
        max_body_bytes: larger request bodies get 413.

    Use as a context manager or call ``start()`` / ``stop()``. All accessors
    are thread-safe. One SQLite connection is shared under a lock.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str = ":memory:",
        *,
        verbose: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.host = host
        self.db_path = str(db_path)
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self._requested_port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._counters = self._load_counters()
        self._faults = _default_faults()
        self._requests: list[dict[str, Any]] = []
        self._envelopes_seen = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "IngestServer":
        """Bind and serve in a daemon thread.

        Returns:
            self, so ``srv = IngestServer().start()`` works.

        Raises:
            RuntimeError: if already started or stopped.
            OSError: if the address cannot be bound.
        """
        if self._httpd is not None or self._closed:
            raise RuntimeError("IngestServer can be started once; make a new one")
        self._httpd = _HTTPServer((self.host, self._requested_port), _IngestHandler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"revu-ingest-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()
            self._db.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH

    def messages_url(self, room: str) -> str:
        """URL of the idempotent chat endpoint for ``room``."""
        return self.url + CHAT_MESSAGES_PATH.format(room=room)

    # -- accessors (same data as the control endpoints) --------------------

    def state(self, tail: int | None = None) -> dict[str, Any]:
        """What the server has received; the body of GET /__control/state.

        Args:
            tail: if given, only the last ``tail`` events and requests are
                listed (counters still cover everything).

        Returns:
            {"events": [...], "unique", "duplicates", "received_total",
             "envelopes_seen", "requests_total", "requests": [...],
             "faults": {...}, "messages": [...], "mutation_replays"}.
            See the module docstring and README. ``tail`` also limits
            ``messages``.
        """
        with self._lock:
            self._check_open()
            events = self._select_events(tail)
            unique = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            requests = self._requests if tail is None else self._requests[-tail:] if tail else []
            return {
                "events": events,
                "unique": unique,
                "duplicates": self._counters["duplicates"],
                "received_total": self._counters["received_total"],
                "envelopes_seen": self._envelopes_seen,
                "requests_total": len(self._requests),
                "requests": [dict(r, event_ids=list(r["event_ids"]), body_keys=list(r["body_keys"])) for r in requests],
                "faults": _copy_faults(self._faults),
                "messages": self._select_messages(tail),
                "mutation_replays": self._counters["mutation_replays"],
            }

    def faults(self) -> dict[str, Any]:
        """The current fault config (a copy)."""
        with self._lock:
            return _copy_faults(self._faults)

    def set_faults(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Change fault switches; absent keys stay as they are.

        Args:
            update: any of "script", "offline", "poison_events", "delay_ms",
                "keep_alive", "mutation_script", "mutation_offline",
                "mutation_delay_ms" (see the module docstring). A script
                replaces that queue of remaining steps.

        Returns:
            The resulting fault config.

        Raises:
            ValueError: if a key is unknown or a value has the wrong type;
                nothing is changed then.
        """
        normalized = _normalize_fault_update(update)
        with self._lock:
            self._faults.update(normalized)
            self._changed.notify_all()
            return _copy_faults(self._faults)

    def reset(self) -> None:
        """Forget every event, message, idempotency key, counter and logged
        request; clear all faults (event and mutation)."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM events")
            self._db.execute("DELETE FROM messages")
            self._db.execute("DELETE FROM mutation_keys")
            self._db.execute("DELETE FROM counters")
            self._db.execute("COMMIT")
            self._counters = {name: 0 for name in _PERSISTED_COUNTERS}
            self._faults = _default_faults()
            self._requests = []
            self._envelopes_seen = 0
            self._changed.notify_all()

    def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Block until ``predicate(state())`` is true.

        Re-evaluated whenever a request starts or finishes, a mutation is
        processed, or the config changes (and at least every 0.5 s).

        Returns:
            The state that satisfied the predicate.

        Raises:
            TimeoutError: with a short summary of the last state.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
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
                self._changed.wait(min(remaining, 0.5))

    # -- internals ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _Stopped("IngestServer is stopped")

    def _load_counters(self) -> dict[str, int]:
        rows = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {name: int(rows.get(name, 0)) for name in _PERSISTED_COUNTERS}

    def _save_counters(self) -> None:
        self._db.executemany(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            list(self._counters.items()),
        )

    def _select_events(self, tail: int | None) -> list[dict[str, Any]]:
        columns = (
            "event_id, api_key, event, properties, created_at, sent_at, stream, "
            "received_at_ms, request_seq, receipts, envelope, id"
        )
        if tail is None:
            rows = self._db.execute(f"SELECT {columns} FROM events ORDER BY received_at_ms, id").fetchall()
        else:
            rows = self._db.execute(
                f"SELECT * FROM (SELECT {columns} FROM events ORDER BY received_at_ms DESC, id DESC LIMIT ?) "
                "ORDER BY received_at_ms, id",
                (tail,),
            ).fetchall()
        return [
            {
                "event_id": r[0],
                "api_key": r[1],
                "event": r[2],
                "properties": json.loads(r[3]),
                "created_at": r[4],
                "sent_at": r[5],
                "stream": r[6],
                "received_at_ms": r[7],
                "request_seq": r[8],
                "receipts": r[9],
                "envelope": json.loads(r[10]),
            }
            for r in rows
        ]

    def _select_messages(self, tail: int | None) -> list[dict[str, Any]]:
        columns = "message_id, room, text, idempotency_key, at_ms, seq_in_room, request_seq"
        if tail is None:
            rows = self._db.execute(f"SELECT {columns} FROM messages ORDER BY message_id").fetchall()
        else:
            rows = self._db.execute(
                f"SELECT * FROM (SELECT {columns} FROM messages ORDER BY message_id DESC LIMIT ?) "
                "ORDER BY message_id",
                (tail,),
            ).fetchall()
        names = columns.split(", ")
        return [dict(zip(names, r)) for r in rows]

    def _begin_request(self, handler: "_IngestHandler", body: bytes, parsed: _Parsed | None) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            self._counters["request_seq"] += 1
            entry = {
                "seq": self._counters["request_seq"],
                "kind": "events",
                "at_ms": _now_ms(),
                "status": None,
                "n": len(parsed.batch) if parsed else 0,
                "event_ids": parsed.event_ids if parsed else [],
                "bytes": len(body),
                "api_key": parsed.api_key if parsed else None,
                "content_type": handler.headers.get("Content-Type"),
                "origin": handler.headers.get("Origin"),
                "body_keys": parsed.body_keys if parsed else [],
                "idempotency_key": handler.headers.get("Idempotency-Key"),
                "outcome": "pending",
            }
            self._envelopes_seen += entry["n"]
            self._requests.append(entry)
            self._changed.notify_all()
            return entry

    def _begin_mutation(
        self, handler: "_IngestHandler", body: bytes, room: str, parsed: _MutationBody | None
    ) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            self._counters["request_seq"] += 1
            entry = {
                "seq": self._counters["request_seq"],
                "kind": "mutation",
                "at_ms": _now_ms(),
                "status": None,
                "n": 0,
                "event_ids": [],
                "bytes": len(body),
                "api_key": None,
                "content_type": handler.headers.get("Content-Type"),
                "origin": handler.headers.get("Origin"),
                "body_keys": parsed.body_keys if parsed else [],
                "idempotency_key": handler.headers.get("Idempotency-Key"),
                "room": room,
                "effect": None,
                "message_id": None,
                "outcome": "pending",
            }
            self._requests.append(entry)
            self._changed.notify_all()
            return entry

    def _finish_request(self, entry: dict[str, Any], status: int | None, outcome: str, **extra: Any) -> None:
        with self._lock:
            entry["status"] = status
            entry["outcome"] = outcome
            entry.update(extra)
            self._changed.notify_all()

    def _take_mutation_step(self) -> tuple[bool, dict[str, Any] | None, int]:
        with self._lock:
            faults = self._faults
            if faults["mutation_offline"]:
                return True, None, 0
            step = faults["mutation_script"].pop(0) if faults["mutation_script"] else None
            delay_ms = step["delay_ms"] if step and step["delay_ms"] is not None else faults["mutation_delay_ms"]
            return False, step, delay_ms

    def _mutate(self, key: str, room: str, parsed: _MutationBody, seq: int) -> tuple[int, dict[str, Any], str, int | None]:
        """Check-and-apply one chat message for ``key``, atomically.

        Returns:
            (status, reply, effect, message_id); effect is "applied",
            "replayed", "recorded" (invalid body, key remembered) or
            "rejected" (409, nothing done).
        """
        fingerprint = parsed.fingerprint(room)
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN")
            try:
                row = self._db.execute(
                    "SELECT fingerprint, status, reply, message_id FROM mutation_keys WHERE idempotency_key = ?",
                    (key,),
                ).fetchone()
                if row is not None and row[0] != fingerprint:
                    result: tuple[int, dict[str, Any], str, int | None] = (
                        409,
                        {
                            "ok": False,
                            "code": "idempotency_key_reused",
                            "error": "this Idempotency-Key was first used with a different room or text",
                        },
                        "rejected",
                        None,
                    )
                elif row is not None:
                    reply = json.loads(row[2])
                    if reply.get("ok") is True:
                        reply["replayed"] = True
                    self._counters["mutation_replays"] += 1
                    result = (row[1], reply, "replayed", row[3])
                elif parsed.error is not None:
                    reply = {"ok": False, "code": "invalid_message", "error": parsed.error}
                    self._db.execute(
                        "INSERT INTO mutation_keys (idempotency_key, fingerprint, status, reply, message_id, at_ms) "
                        "VALUES (?, ?, ?, ?, NULL, ?)",
                        (key, fingerprint, 422, _dumps(reply), _now_ms()),
                    )
                    result = (422, reply, "recorded", None)
                else:
                    now_ms = _now_ms()
                    message_id = self._db.execute("SELECT COALESCE(MAX(message_id), 0) + 1 FROM messages").fetchone()[0]
                    seq_in_room = self._db.execute(
                        "SELECT COALESCE(MAX(seq_in_room), 0) + 1 FROM messages WHERE room = ?", (room,)
                    ).fetchone()[0]
                    self._db.execute(
                        "INSERT INTO messages (message_id, room, text, idempotency_key, at_ms, seq_in_room, request_seq) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (message_id, room, parsed.text, key, now_ms, seq_in_room, seq),
                    )
                    reply = {"ok": True, "emitId": key, "message_id": message_id, "replayed": False}
                    self._db.execute(
                        "INSERT INTO mutation_keys (idempotency_key, fingerprint, status, reply, message_id, at_ms) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (key, fingerprint, 200, _dumps(reply), message_id, now_ms),
                    )
                    result = (200, reply, "applied", message_id)
                self._save_counters()  # mutation_replays, and request_seq for a restart
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._counters = self._load_counters()
                raise
            self._changed.notify_all()
            return result

    def _take_step(self) -> tuple[bool, dict[str, Any] | None, int, frozenset[str]]:
        with self._lock:
            faults = self._faults
            if faults["offline"]:
                return True, None, 0, frozenset()
            step = faults["script"].pop(0) if faults["script"] else None
            delay_ms = step["delay_ms"] if step and step["delay_ms"] is not None else faults["delay_ms"]
            return False, step, delay_ms, frozenset(faults["poison_events"])

    def _store(self, api_key: str, envelopes: list[dict[str, Any]], seq: int) -> None:
        """Insert valid envelopes; an already stored event_id counts as a duplicate."""
        now_ms = _now_ms()
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN")
            try:
                for env in envelopes:
                    stream = env.get("stream")
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events (event_id, api_key, event, properties, envelope, "
                        "created_at, sent_at, stream, received_at_ms, request_seq) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            env["event_id"],
                            api_key,
                            env["event"],
                            _dumps(env.get("properties", {})),
                            _dumps(env),
                            _number_or_none(env.get("created_at")),
                            _number_or_none(env.get("sent_at")),
                            stream if isinstance(stream, str) else None,
                            now_ms,
                            seq,
                        ),
                    )
                    if cur.rowcount == 0:
                        self._counters["duplicates"] += 1
                        self._db.execute(
                            "UPDATE events SET receipts = receipts + 1 WHERE event_id = ?", (env["event_id"],)
                        )
                    self._counters["received_total"] += 1
                self._save_counters()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._counters = self._load_counters()
                raise

    def _ingest(self, parsed: _Parsed, seq: int, store: bool, reject_ids: frozenset[str]) -> dict[str, Any]:
        """Validate envelopes one by one, store the good ones, build the reply."""
        accepted: list[str] = []
        rejected: list[dict[str, Any]] = []
        good: list[dict[str, Any]] = []
        for env in parsed.batch:
            if _envelope_problem(env) is not None:
                rejected.append({"event_id": _echo_id(env), "code": "invalid_envelope"})
            elif env["event_id"] in reject_ids:
                rejected.append({"event_id": env["event_id"], "code": "rejected_by_test"})
            else:
                good.append(env)
                accepted.append(env["event_id"])
        if store and good:
            assert parsed.api_key is not None
            self._store(parsed.api_key, good, seq)
        return {"ok": True, "accepted": accepted, "rejected": rejected}


def _number_or_none(value: Any) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


class _HTTPServer(DemoHTTPServer):
    app: IngestServer


# --------------------------------------------------------------------------
# HTTP handler


class _IngestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "revu-ingest/0.1"
    timeout = IDLE_TIMEOUT_S
    server: _HTTPServer

    # Routes: path -> {method: handler method name}.
    ROUTES: dict[str, dict[str, str]] = {
        EVENTS_PATH: {"POST": "_post_events"},
        MUTATIONS_PATH: {"POST": "_post_mutations"},
        "/__control/state": {"GET": "_get_state"},
        "/__control/faults": {"GET": "_get_faults", "POST": "_post_faults"},
        "/__control/reset": {"POST": "_post_reset"},
        "/healthz": {"GET": "_get_health"},
        "/": {"GET": "_get_health"},
    }
    # /v1/chat/<room>/messages (see _room_of).
    CHAT_ROUTES: dict[str, str] = {"POST": "_post_chat_message"}

    @property
    def app(self) -> IngestServer:
        return self.server.app

    def setup(self) -> None:
        super().setup()
        with self.app._lock:
            self.app._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.app._lock:
                self.app._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.app.verbose:
            super().log_message(format, *args)

    # Every method goes through one dispatcher so that unknown methods get a
    # JSON 405 with CORS headers instead of http.server's HTML 501.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def do_OPTIONS(self) -> None:
        try:
            self._read_body()
        except _BodyError:
            self.close_connection = True
        self._preflight()

    # -- plumbing ----------------------------------------------------------

    def _dispatch(self) -> None:
        self._responded = False
        url = urlsplit(self.path)
        try:
            try:
                body = self._read_body()
            except _BodyError as exc:
                self.close_connection = True
                room = _room_of(url.path)
                if url.path == EVENTS_PATH and self.command == "POST":
                    entry = self.app._begin_request(self, b"", None)
                    self.app._finish_request(entry, exc.status, "bad_request")
                elif room and self.command == "POST":
                    entry = self.app._begin_mutation(self, b"", room, None)
                    self.app._finish_request(entry, exc.status, "bad_request")
                self._send_json(exc.status, {"ok": False, "code": exc.code, "error": exc.message})
                return
            args: tuple[Any, ...] = ()
            methods = self.ROUTES.get(url.path)
            if methods is None:
                room = _room_of(url.path)
                if room == "":
                    self._send_json(
                        404,
                        {"ok": False, "code": "not_found", "error": "room must be 1-64 characters of A-Z a-z 0-9 _ -"},
                    )
                    return
                if room is not None:
                    methods, args = self.CHAT_ROUTES, (room,)
            if methods is None:
                self._send_json(404, {"ok": False, "code": "not_found", "error": f"no route for {url.path}"})
                return
            name = methods.get(self.command)
            if name is None:
                allow = ", ".join(sorted(set(methods) | {"OPTIONS"}))
                self._send_json(
                    405,
                    {"ok": False, "code": "method_not_allowed", "error": f"{self.command} not allowed here"},
                    {"Allow": allow},
                )
                return
            getattr(self, name)(body, parse_qs(url.query), *args)
        except (BrokenPipeError, ConnectionResetError, _Stopped):
            self.close_connection = True
        except Exception as exc:  # a bug in this server: answer 500, keep serving
            traceback.print_exc()
            self.close_connection = True
            if not self._responded:
                try:
                    self._send_json(500, {"ok": False, "code": "server_error", "error": repr(exc)})
                except OSError:
                    pass

    def _read_body(self) -> bytes:
        limit = self.app.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise _BodyError(400, "bad_request", "Content-Length is not an integer") from None
        if length < 0:
            raise _BodyError(400, "bad_request", "Content-Length is negative")
        if length > limit:
            raise _BodyError(413, "too_large", f"body is larger than {limit} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BodyError(400, "bad_request", "body shorter than Content-Length")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "bad_request", "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BodyError(413, "too_large", f"body is larger than {limit} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _cors_headers(self) -> list[tuple[str, str]]:
        origin = self.headers.get("Origin")
        headers = []
        if origin:
            # sendBeacon sends credentials, and a credentialed request fails
            # CORS on "*": the origin must be echoed.
            # https://fetch.spec.whatwg.org/#cors-protocol-and-credentials
            headers += [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true")]
        else:
            headers.append(("Access-Control-Allow-Origin", "*"))
        headers += [
            ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", "Retry-After"),
            ("Access-Control-Allow-Private-Network", "true"),
        ]
        return headers

    def _keep_alive_headers(self) -> list[tuple[str, str]]:
        with self.app._lock:
            keep_alive = self.app._faults["keep_alive"]
        if not keep_alive:
            self.close_connection = True
        return [("Connection", "close")] if self.close_connection else []

    def _preflight(self) -> None:
        requested = self.headers.get("Access-Control-Request-Headers")
        self.send_response(204)
        for name, value in self._cors_headers():
            if name == "Vary":
                value = "Origin, Access-Control-Request-Headers"
            self.send_header(name, value)
        self.send_header("Access-Control-Allow-Methods", PREFLIGHT_ALLOW_METHODS)
        self.send_header("Access-Control-Allow-Headers", requested or PREFLIGHT_ALLOW_HEADERS)
        self.send_header("Access-Control-Max-Age", "600")
        for name, value in self._keep_alive_headers():
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status: int, payload: Any, extra_headers: Mapping[str, str] | None = None) -> None:
        body = _dumps(payload).encode("utf-8")
        self._responded = True
        self.send_response(status)
        for name, value in self._cors_headers():
            self.send_header(name, value)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        no_body = status == 204 or status == 304
        if not no_body:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in self._keep_alive_headers():
            self.send_header(name, value)
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def _drop_connection(self) -> None:
        """Close the TCP connection without writing a single byte of reply."""
        self._responded = True
        self.close_connection = True

    # -- endpoints ---------------------------------------------------------

    def _post_events(self, body: bytes, query: dict[str, list[str]]) -> None:
        app = self.app
        parsed = _Parsed(body)
        entry = app._begin_request(self, body, parsed)
        offline, step, delay_ms, poison = app._take_step()
        fault = self._fault_preamble(entry, offline, step, delay_ms)
        if fault is None:
            return
        status, store, extra = fault
        fault_2xx = 200 <= status < 300

        if step and step["drop_reply"]:
            # Ack loss: the server does its work as it would have (storing per
            # `store`), then the reply never arrives.
            would_store = store and parsed.error is None
            if fault_2xx and self._poisoned(parsed, poison):
                would_store = False
            if would_store:
                app._ingest(parsed, entry["seq"], True, frozenset(step["reject_ids"]))
            app._finish_request(entry, None, "dropped")
            self._drop_connection()
            return

        if not fault_2xx:
            if store and parsed.error is None:
                app._ingest(parsed, entry["seq"], True, frozenset(step["reject_ids"]))
            app._finish_request(entry, status, "fault")
            self._send_json(status, {"ok": False, "code": f"fault_{status}"}, extra)
            return

        if parsed.error is not None:
            app._finish_request(entry, 400, "bad_request")
            self._send_json(400, {"ok": False, "code": "bad_request", "error": parsed.error}, extra)
            return

        if self._poisoned(parsed, poison):
            app._finish_request(entry, 422, "poison")
            self._send_json(422, {"ok": False, "code": "poison"}, extra)
            return

        reply = app._ingest(parsed, entry["seq"], store, frozenset(step["reject_ids"]) if step else frozenset())
        app._finish_request(entry, status, "ok")
        self._send_json(status, reply, extra)

    def _fault_preamble(self, entry: dict[str, Any], offline: bool, step: dict[str, Any] | None,
                        delay_ms: int) -> tuple[int, bool, dict[str, str]] | None:
        """What both endpoints do first with a fault step: "offline" drops the
        connection (returns None); otherwise sleep the delay and return the
        step's status, whether to store/apply, and its extra headers."""
        if offline:
            self.app._finish_request(entry, None, "offline")
            self._drop_connection()
            return None
        if delay_ms:
            time.sleep(delay_ms / 1000)
        status = step["status"] if step else 200
        store = step["store"] if step else True
        extra = {"Retry-After": step["retry_after"]} if step and step["retry_after"] is not None else {}
        return status, store, extra

    @staticmethod
    def _poisoned(parsed: _Parsed, poison: frozenset[str]) -> bool:
        return bool(poison) and any(isinstance(env, dict) and env.get("event") in poison for env in parsed.batch)

    def _post_mutations(self, body: bytes, query: dict[str, list[str]]) -> None:
        # Reserved for a generic mutation endpoint; the reference one for the
        # outbox is the chat endpoint.
        self._send_json(
            501,
            {
                "ok": False,
                "code": "not_implemented",
                "error": f"{MUTATIONS_PATH} is reserved; the idempotent endpoint is POST {CHAT_MESSAGES_PATH}",
            },
        )

    def _idempotency_key(self) -> str | None:
        """The request's Idempotency-Key if there is exactly one and it is
        1-200 printable ASCII characters; else None."""
        values = self.headers.get_all("Idempotency-Key") or []
        if len(values) != 1 or not _IDEMPOTENCY_KEY_RE.fullmatch(values[0]):
            return None
        return values[0]

    def _process_mutation(
        self, key: str | None, room: str, parsed: _MutationBody, seq: int
    ) -> tuple[int, dict[str, Any], str, int | None, str]:
        """(status, reply, effect, message_id, outcome) of the normal handling."""
        if key is None:
            reply = {
                "ok": False,
                "code": "missing_idempotency_key",
                "error": "one Idempotency-Key header of 1-200 printable ASCII characters is required",
            }
            return 400, reply, "rejected", None, "missing_key"
        status, reply, effect, message_id = self.app._mutate(key, room, parsed, seq)
        outcome = {"applied": "applied", "replayed": "replayed", "recorded": "invalid", "rejected": "conflict"}[effect]
        return status, reply, effect, message_id, outcome

    def _post_chat_message(self, body: bytes, query: dict[str, list[str]], room: str) -> None:
        app = self.app
        key = self._idempotency_key()
        parsed = _MutationBody(body)
        entry = app._begin_mutation(self, body, room, parsed)
        offline, step, delay_ms = app._take_mutation_step()
        # The delay runs before applying: the page may go away while the
        # request is in flight; a keepalive request still completes and applies.
        fault = self._fault_preamble(entry, offline, step, delay_ms)
        if fault is None:
            return
        status, apply, extra = fault
        fault_2xx = 200 <= status < 300

        if step and step["drop_reply"]:
            # Ack loss: applied (if the step says so), then no reply at all.
            done: dict[str, Any] = {}
            if apply:
                _, _, effect, message_id, _ = self._process_mutation(key, room, parsed, entry["seq"])
                done = {"effect": effect, "message_id": message_id}
            app._finish_request(entry, None, "dropped", **done)
            self._drop_connection()
            return

        if not apply:
            app._finish_request(entry, status, "fault")
            self._send_json(status, {"ok": False, "code": f"fault_{status}"}, extra)
            return

        result_status, reply, effect, message_id, outcome = self._process_mutation(key, room, parsed, entry["seq"])
        if not fault_2xx:
            # Applied (store: true), yet the client sees the scripted failure.
            app._finish_request(entry, status, "fault", effect=effect, message_id=message_id)
            self._send_json(status, {"ok": False, "code": f"fault_{status}"}, extra)
            return
        if result_status == 200:
            result_status = status  # a 2xx step may ask for 201, 202 ...
        app._finish_request(entry, result_status, outcome, effect=effect, message_id=message_id)
        self._send_json(result_status, reply, extra)

    def _get_state(self, body: bytes, query: dict[str, list[str]]) -> None:
        tail = None
        if "tail" in query:
            try:
                tail = int(query["tail"][-1])
                if tail < 0:
                    raise ValueError
            except ValueError:
                self._send_json(400, {"ok": False, "code": "bad_request", "error": "tail must be an integer >= 0"})
                return
        self._send_json(200, self.app.state(tail))

    def _get_faults(self, body: bytes, query: dict[str, list[str]]) -> None:
        self._send_json(200, self.app.faults())

    def _post_faults(self, body: bytes, query: dict[str, list[str]]) -> None:
        try:
            update = _loads(body) if body.strip() else {}
            faults = self.app.set_faults(update)
        except (UnicodeDecodeError, ValueError) as exc:
            self._send_json(400, {"ok": False, "code": "bad_request", "error": str(exc)})
            return
        self._send_json(200, faults)

    def _post_reset(self, body: bytes, query: dict[str, list[str]]) -> None:
        self.app.reset()
        self._send_json(200, {"ok": True})

    def _get_health(self, body: bytes, query: dict[str, list[str]]) -> None:
        self._send_json(
            200,
            {"ok": True, "service": "revu-ingest", "events_path": EVENTS_PATH, "messages_path": CHAT_MESSAGES_PATH},
        )


# --------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="revu reference ingest server (with test fault switches)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--db", default=":memory:", help='SQLite file, or ":memory:" (default)')
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    server = IngestServer(args.host, args.port, args.db, verbose=args.verbose).start()
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


if __name__ == "__main__":
    sys.exit(main())
