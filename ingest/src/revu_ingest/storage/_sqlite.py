"""SQLite storage: the embedded default.

One connection per process, used by one worker thread (sqlite3 calls block;
the event loop never waits on them). Several processes may share one file:
WAL journal (readers never block the writer), a busy timeout (a writer waits
for another process's write transaction instead of failing at once), and
``BEGIN IMMEDIATE`` for every write transaction (the write lock is taken up
front, so two processes can never deadlock upgrading a read lock).

Durability: ``synchronous=NORMAL`` by default. In WAL mode a commit is in the
WAL file before the call returns, so a killed process (even ``kill -9``)
never loses an acknowledged event; an OS crash or power cut can lose the
last transactions. ``?synchronous=full`` in the URL fsyncs every commit
(about 3.5 ms per commit on this project's machine).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import parse_qs, urlsplit

from .._wire import KEY_REUSED_REPLY, EventRow, dumps
from ._base import SCHEMA_VERSION, MutationResult, Storage, StorageError, StoreResult, Totals, replayed

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_MS = 10_000
_MAX_ROWS_PER_STATEMENT = 500  # 9 parameters a row, well under SQLite's 32766

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    api_key        TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    stream         TEXT,
    created_at     INTEGER,
    received_at_ms INTEGER NOT NULL,
    request_seq    INTEGER,
    receipts       INTEGER NOT NULL,
    envelope       TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS rooms (
    room     TEXT    PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    message_id      INTEGER PRIMARY KEY,
    room            TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    at_ms           INTEGER NOT NULL,
    seq_in_room     INTEGER NOT NULL,
    request_seq     INTEGER,
    UNIQUE (room, seq_in_room)
);
CREATE TABLE IF NOT EXISTS mutation_keys (
    idempotency_key TEXT    PRIMARY KEY,
    fingerprint     TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    reply           TEXT    NOT NULL,
    message_id      INTEGER,
    at_ms           INTEGER NOT NULL,
    replays         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('request_seq', 0), ('legacy_mutation_replays', 0);
"""

# The reference server before revu-ingest (demo/ingest_server.py up to 0.1)
# wrote events with a `properties` column, counters for duplicates, and no
# schema_version table. Its files are migrated in place, nothing lost.
_LEGACY_TABLES = ("events", "messages", "mutation_keys", "counters")
_MIGRATE_LEGACY = """
INSERT INTO events (event_id, api_key, event, stream, created_at, received_at_ms, request_seq, receipts, envelope)
    SELECT event_id, api_key, event, stream,
           CASE WHEN typeof(created_at) = 'integer' THEN created_at END,
           received_at_ms, request_seq, receipts, envelope
    FROM legacy_events ORDER BY received_at_ms, id;
INSERT INTO messages (message_id, room, text, idempotency_key, at_ms, seq_in_room, request_seq)
    SELECT message_id, room, text, idempotency_key, at_ms, seq_in_room, request_seq FROM legacy_messages;
INSERT INTO rooms (room, last_seq) SELECT room, MAX(seq_in_room) FROM legacy_messages GROUP BY room;
INSERT INTO mutation_keys (idempotency_key, fingerprint, status, reply, message_id, at_ms, replays)
    SELECT idempotency_key, fingerprint, status, reply, message_id, at_ms, 0 FROM legacy_mutation_keys;
UPDATE counters SET value = COALESCE((SELECT value FROM legacy_counters WHERE name = 'request_seq'), 0)
    WHERE name = 'request_seq';
UPDATE counters SET value = COALESCE((SELECT value FROM legacy_counters WHERE name = 'mutation_replays'), 0)
    WHERE name = 'legacy_mutation_replays';
DROP TABLE legacy_events;
DROP TABLE legacy_messages;
DROP TABLE legacy_mutation_keys;
DROP TABLE legacy_counters;
"""


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or
    ``sqlite:///:memory:`` -> (path, query options)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:
        raise ValueError(f"sqlite URL must be sqlite:///path (three slashes): {url!r}")
    if not path:
        raise ValueError(f"sqlite URL has no path: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return path, options


class SqliteStorage(Storage):
    backend = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, options = sqlite_path(url)
        unknown = set(options) - {"synchronous", "busy_timeout_ms"}
        if unknown:
            raise ValueError(f"unknown sqlite URL options {sorted(unknown)}; allowed: synchronous, busy_timeout_ms")
        self.synchronous = options.get("synchronous", "normal").upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be off, normal, full or extra")
        self.busy_timeout_ms = int(options.get("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS))
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing ----------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._closed:
            raise StorageError("sqlite storage is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise StorageError("sqlite storage is closed")
        try:
            return fn(self._db)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk I/O, ...
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"sqlite: {exc}") from exc
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _write(self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        result = fn(db)
        db.execute("COMMIT")
        return result

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="revu-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        except sqlite3.Error as exc:
            await self.close()
            raise StorageError(f"cannot open {self.url}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    def _open_sync(self) -> None:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        self._db = db
        db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        if self.path != ":memory:":
            mode = self._set_wal(db)
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch {self.path} to WAL (journal_mode={mode})")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        self._write(db, self._migrate)

    def _set_wal(self, db: sqlite3.Connection) -> str:
        # Switching to WAL needs an exclusive lock and does not always wait on
        # the busy handler: two processes opening a new file at once retry here.
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = 0
        if "schema_version" in tables:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise StorageError(f"database schema version {version} is newer than this revu-ingest ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        legacy = "events" in tables and "schema_version" not in tables and any(
            r[1] == "properties" for r in db.execute("PRAGMA table_info(events)")
        )
        if legacy:
            missing = [name for name in _LEGACY_TABLES if name not in tables]
            if missing:
                raise StorageError(f"legacy reference-server database without tables {missing}: cannot migrate")
            for name in _LEGACY_TABLES:
                db.execute(f"ALTER TABLE {name} RENAME TO legacy_{name}")
        # Not executescript(): on Python 3.11 it commits the open transaction first.
        for statement in _statements(_SCHEMA_V1 + (_MIGRATE_LEGACY if legacy else "")):
            db.execute(statement)
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            def _close() -> None:
                if self._db is not None:
                    self._db.close()
                    self._db = None

            await asyncio.get_running_loop().run_in_executor(executor, _close)
            executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    # -- events ------------------------------------------------------------

    async def store_events(
        self, api_key: str, rows: Sequence[EventRow], received_at_ms: int, request_seq: int | None = None
    ) -> StoreResult:
        if not rows:
            return StoreResult(0, 0)

        def write(db: sqlite3.Connection) -> StoreResult:
            stored = duplicates = 0
            for start in range(0, len(rows), _MAX_ROWS_PER_STATEMENT):
                chunk = rows[start : start + _MAX_ROWS_PER_STATEMENT]
                params: list[Any] = []
                for r in chunk:
                    params += (r.event_id, api_key, r.event, r.stream, r.created_at, received_at_ms,
                               request_seq, r.receipts, r.envelope)
                sql = (
                    "INSERT INTO events (event_id, api_key, event, stream, created_at, received_at_ms, "
                    "request_seq, receipts, envelope) VALUES "
                    + ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(chunk))
                    + " ON CONFLICT (event_id) DO UPDATE SET receipts = receipts + excluded.receipts"
                    " RETURNING event_id, receipts"
                )
                sent = {r.event_id: r.receipts for r in chunk}
                for event_id, receipts in db.execute(sql, params):
                    # A new row holds exactly the receipts sent; a known one more.
                    if receipts == sent[event_id]:
                        stored += 1
                        duplicates += receipts - 1
                    else:
                        duplicates += sent[event_id]
            return StoreResult(stored, duplicates)

        return await self._run(lambda db: self._write(db, write))

    # -- mutations ---------------------------------------------------------

    async def apply_message(
        self,
        key: str,
        fingerprint: str,
        room: str,
        text: str | None,
        error: str | None,
        now_ms: int,
        request_seq: int | None = None,
    ) -> MutationResult:
        def apply(db: sqlite3.Connection) -> MutationResult:
            # BEGIN IMMEDIATE holds the database write lock: the check and the
            # apply are one step for every process sharing the file.
            row = db.execute(
                "SELECT fingerprint, status, reply, message_id FROM mutation_keys WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row[0] != fingerprint:
                    return MutationResult(409, dict(KEY_REUSED_REPLY), "rejected", None)
                db.execute("UPDATE mutation_keys SET replays = replays + 1 WHERE idempotency_key = ?", (key,))
                return replayed(row[1], row[2], row[3])
            if error is not None:
                reply = {"ok": False, "code": "invalid_message", "error": error}
                db.execute(
                    "INSERT INTO mutation_keys (idempotency_key, fingerprint, status, reply, message_id, at_ms) "
                    "VALUES (?, ?, 422, ?, NULL, ?)",
                    (key, fingerprint, dumps(reply), now_ms),
                )
                return MutationResult(422, reply, "recorded", None)
            seq_in_room = db.execute(
                "INSERT INTO rooms (room, last_seq) VALUES (?, 1) "
                "ON CONFLICT (room) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
                (room,),
            ).fetchone()[0]
            message_id = db.execute(
                "INSERT INTO messages (room, text, idempotency_key, at_ms, seq_in_room, request_seq) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING message_id",
                (room, text, key, now_ms, seq_in_room, request_seq),
            ).fetchone()[0]
            reply = {"ok": True, "emitId": key, "message_id": message_id, "replayed": False}
            db.execute(
                "INSERT INTO mutation_keys (idempotency_key, fingerprint, status, reply, message_id, at_ms) "
                "VALUES (?, ?, 200, ?, ?, ?)",
                (key, fingerprint, dumps(reply), message_id, now_ms),
            )
            return MutationResult(200, reply, "applied", message_id)

        return await self._run(lambda db: self._write(db, apply))

    # -- inspection --------------------------------------------------------

    async def totals(self) -> Totals:
        def read(db: sqlite3.Connection) -> Totals:
            unique, received = db.execute("SELECT COUNT(*), COALESCE(SUM(receipts), 0) FROM events").fetchone()
            replays = db.execute(
                "SELECT COALESCE(SUM(replays), 0) + (SELECT value FROM counters WHERE name = 'legacy_mutation_replays') "
                "FROM mutation_keys"
            ).fetchone()[0]
            messages = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            return Totals(unique, received, replays, messages)

        return await self._run(read)

    async def events(self, tail: int | None = None) -> list[dict[str, Any]]:
        columns = "event_id, api_key, event, stream, received_at_ms, request_seq, receipts, envelope, id"

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if tail is None:
                rows = db.execute(f"SELECT {columns} FROM events ORDER BY received_at_ms, id").fetchall()
            else:
                rows = db.execute(
                    f"SELECT * FROM (SELECT {columns} FROM events ORDER BY received_at_ms DESC, id DESC LIMIT ?) "
                    "ORDER BY received_at_ms, id",
                    (tail,),
                ).fetchall()
            return [_event_dict(r) for r in rows]

        return await self._run(read)

    async def messages(self, tail: int | None = None) -> list[dict[str, Any]]:
        columns = "message_id, room, text, idempotency_key, at_ms, seq_in_room, request_seq"
        names = columns.split(", ")

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if tail is None:
                rows = db.execute(f"SELECT {columns} FROM messages ORDER BY message_id").fetchall()
            else:
                rows = db.execute(
                    f"SELECT * FROM (SELECT {columns} FROM messages ORDER BY message_id DESC LIMIT ?) "
                    "ORDER BY message_id",
                    (tail,),
                ).fetchall()
            return [dict(zip(names, r)) for r in rows]

        return await self._run(read)

    async def next_request_seq(self) -> int:
        def bump(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'request_seq' RETURNING value"
            ).fetchone()[0]

        return await self._run(lambda db: self._write(db, bump))

    async def reset(self) -> None:
        def wipe(db: sqlite3.Connection) -> None:
            for table in ("events", "messages", "rooms", "mutation_keys"):
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE counters SET value = 0")

        await self._run(lambda db: self._write(db, wipe))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _event_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "event_id": r[0],
        "api_key": r[1],
        "event": r[2],
        "stream": r[3],
        "received_at_ms": r[4],
        "request_seq": r[5],
        "receipts": r[6],
        "envelope": json.loads(r[7]),
    }


