"""The CPython runtime's store: one SQLite file, shareable by processes.

One row per record, keyed by ``event_id``. Rules for several processes on
one file (the "owner rule", docs/python.md):

1. A process registers an owner row (``revu_owners``) and renews its
   ``alive_until`` every ``lease_ms / 3``; the row expires ``lease_ms`` after
   the last renewal.
2. A record is written by ``record()`` owned by the recording process; only
   its owner sends it, deletes it or moves it to the dead letters.
3. Before a request, the owner claims the rows it carries: ``in_flight_until
   = now + timeout + lease_ms`` (``claim``), in a ``BEGIN IMMEDIATE``
   transaction that also checks it still owns them; the claim is cleared when
   the request ends (answered or failed).
4. A row changes owner (``adopt``, also ``BEGIN IMMEDIATE``) only when its
   owner is gone (closed: owner NULL; or its owner row expired) AND its
   ``in_flight_until`` has passed. So two processes never carry the same row
   in overlapping requests, unless a request outlives its claim (a server
   answering slower than timeout + lease_ms while its sender is presumed dead).

Every write is committed before the call returns (WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS revu_queue (
    event_id TEXT PRIMARY KEY,
    raw TEXT NOT NULL,
    seq INTEGER NOT NULL,
    owner TEXT,
    in_flight_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS revu_queue_owner ON revu_queue(owner, seq);
CREATE TABLE IF NOT EXISTS revu_dead (event_id TEXT PRIMARY KEY, raw TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revu_quarantine (
    id TEXT, area TEXT, reason TEXT, raw TEXT, at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS revu_owners (
    owner TEXT PRIMARY KEY, pid INTEGER, host TEXT, alive_until INTEGER NOT NULL
);
"""
# SQLite's default limit on host parameters is 999 on old builds.
CHUNK = 500
MAX_QUARANTINE_ROWS = 1_000


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


class SqliteStore:
    """Rows of one owner in a shared SQLite file. Thread-safe (one lock).

    Args:
        path: the SQLite file (created with its tables if missing).
        owner: this process's owner token (unique per client).
        lease_ms: how long an owner row stays alive without renewal.
        busy_timeout_ms: how long a write waits for another process's lock.
    """

    def __init__(self, path: str, owner: str, lease_ms: int, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.owner = owner
        self.lease_ms = lease_ms
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        self.wal = str(mode).lower() == "wal"
        self._db.execute("PRAGMA synchronous = FULL")
        with self._lock:
            self._begin()
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    # -- transactions --------------------------------------------------------

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            self._begin()
            try:
                out = fn(self._db)
                self._db.execute("COMMIT")
                return out
            except BaseException:
                self._rollback()
                raise

    # -- owner rule ------------------------------------------------------------

    def heartbeat_and_adopt(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """Renew this owner's lease, forget expired owners, and take over up
        to ``limit`` rows whose owner is gone and whose claim has passed.

        Returns:
            ``(event_id, raw)`` of the adopted rows, in seq order.
        """
        def run(db: sqlite3.Connection) -> list[tuple[str, str]]:
            db.execute(
                "INSERT INTO revu_owners(owner, pid, host, alive_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET alive_until = excluded.alive_until",
                (self.owner, os.getpid(), socket.gethostname(), now_ms + self.lease_ms))
            db.execute("DELETE FROM revu_owners WHERE alive_until <= ?", (now_ms,))
            if limit <= 0:
                return []
            rows = db.execute(
                "SELECT event_id, raw FROM revu_queue WHERE in_flight_until <= ? AND "
                "(owner IS NULL OR owner NOT IN (SELECT owner FROM revu_owners)) ORDER BY seq LIMIT ?",
                (now_ms, limit)).fetchall()
            for part in _chunks([r[0] for r in rows]):
                db.execute(f"UPDATE revu_queue SET owner = ?, in_flight_until = 0 "
                           f"WHERE event_id IN ({','.join('?' * len(part))})", (self.owner, *part))
            return [(str(r[0]), str(r[1])) for r in rows]
        return self._tx(run)

    def claim(self, event_ids: Sequence[str], until_ms: int) -> set[str]:
        """Mark rows this owner still owns as carried by a request until
        ``until_ms``. Returns the ids claimed (the others were adopted by
        another process or deleted)."""
        def run(db: sqlite3.Connection) -> set[str]:
            claimed: set[str] = set()
            for part in _chunks(list(event_ids)):
                marks = ",".join("?" * len(part))
                db.execute(f"UPDATE revu_queue SET in_flight_until = ? WHERE owner = ? AND event_id IN ({marks})",
                           (until_ms, self.owner, *part))
                claimed.update(r[0] for r in db.execute(
                    f"SELECT event_id FROM revu_queue WHERE owner = ? AND event_id IN ({marks})",
                    (self.owner, *part)))
            return claimed
        return self._tx(run)

    def unclaim(self, event_ids: Sequence[str]) -> None:
        """The request carrying these rows has ended (answered or failed)."""
        def run(db: sqlite3.Connection) -> None:
            for part in _chunks(list(event_ids)):
                db.execute(f"UPDATE revu_queue SET in_flight_until = 0 WHERE owner = ? AND event_id IN "
                           f"({','.join('?' * len(part))})", (self.owner, *part))
        self._tx(run)

    def release(self) -> int:
        """Give up this owner's rows (a clean close): others adopt them at
        once, or when a request still carrying them has timed out."""
        def run(db: sqlite3.Connection) -> int:
            n = db.execute("UPDATE revu_queue SET owner = NULL WHERE owner = ?", (self.owner,)).rowcount
            db.execute("DELETE FROM revu_owners WHERE owner = ?", (self.owner,))
            return n
        return self._tx(run)

    # -- records ---------------------------------------------------------------

    def append(self, event_id: str, raw: str, seq: int) -> None:
        """Store a new record owned by this process; committed on return."""
        with self._lock:
            self._db.execute("INSERT INTO revu_queue(event_id, raw, seq, owner) VALUES (?, ?, ?, ?)",
                             (event_id, raw, seq, self.owner))

    def delete(self, event_ids: Sequence[str]) -> None:
        def run(db: sqlite3.Connection) -> None:
            for part in _chunks(list(event_ids)):
                db.execute(f"DELETE FROM revu_queue WHERE owner = ? AND event_id IN ({','.join('?' * len(part))})",
                           (self.owner, *part))
        self._tx(run)

    def dead_letters(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"id": r[0], "raw": r[1]} for r in self._db.execute("SELECT event_id, raw FROM revu_dead")]

    def store_dead_letters(self, entries: Sequence[dict[str, Any]]) -> None:
        def run(db: sqlite3.Connection) -> None:
            for entry in entries:
                event_id = entry["env"]["event_id"]
                db.execute("INSERT OR REPLACE INTO revu_dead(event_id, raw) VALUES (?, ?)",
                           (event_id, json.dumps(entry, separators=(",", ":"), ensure_ascii=False)))
                db.execute("DELETE FROM revu_queue WHERE owner = ? AND event_id = ?", (self.owner, event_id))
        self._tx(run)

    def requeue(self, records: Sequence[dict[str, Any]]) -> None:
        def run(db: sqlite3.Connection) -> None:
            for record in records:
                event_id = record["env"]["event_id"]
                db.execute("INSERT OR REPLACE INTO revu_queue(event_id, raw, seq, owner) VALUES (?, ?, ?, ?)",
                           (event_id, json.dumps(record, separators=(",", ":"), ensure_ascii=False),
                            int(record.get("seq", 0)), self.owner))
                db.execute("DELETE FROM revu_dead WHERE event_id = ?", (event_id,))
        self._tx(run)

    def delete_dead_letters(self, event_ids: Sequence[str]) -> None:
        def run(db: sqlite3.Connection) -> None:
            for part in _chunks(list(event_ids)):
                db.execute(f"DELETE FROM revu_dead WHERE event_id IN ({','.join('?' * len(part))})", tuple(part))
        self._tx(run)

    def quarantine(self, entries: Sequence[dict[str, Any]], now_ms: int) -> None:
        """Move stored values aside (bounded: the oldest quarantined go first)."""
        def run(db: sqlite3.Connection) -> None:
            for entry in entries:
                table = "revu_dead" if entry.get("area") == "dead" else "revu_queue"
                row = db.execute(f"SELECT raw FROM {table} WHERE event_id = ?", (entry["id"],)).fetchone()
                if row is None:
                    continue
                db.execute("INSERT INTO revu_quarantine(id, area, reason, raw, at_ms) VALUES (?, ?, ?, ?, ?)",
                           (entry["id"], entry.get("area"), entry.get("reason"), row[0], now_ms))
                db.execute(f"DELETE FROM {table} WHERE event_id = ?", (entry["id"],))
            db.execute("DELETE FROM revu_quarantine WHERE rowid NOT IN "
                       "(SELECT rowid FROM revu_quarantine ORDER BY rowid DESC LIMIT ?)", (MAX_QUARANTINE_ROWS,))
        self._tx(run)

    def counts(self) -> dict[str, int]:
        """Rows in the file: all queued, this owner's, dead letters, quarantined."""
        with self._lock:
            db = self._db
            return {
                "rows": db.execute("SELECT count(*) FROM revu_queue").fetchone()[0],
                "owned": db.execute("SELECT count(*) FROM revu_queue WHERE owner = ?", (self.owner,)).fetchone()[0],
                "deadLetters": db.execute("SELECT count(*) FROM revu_dead").fetchone()[0],
                "quarantined": db.execute("SELECT count(*) FROM revu_quarantine").fetchone()[0],
            }

    def close(self) -> None:
        with self._lock:
            self._db.close()
