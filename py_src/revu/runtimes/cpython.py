"""revu for CPython processes: the same core, a SQLite store, ``http.client``.

    from revu.runtimes import cpython as revu

    revu.init("my-api-key", host="https://ingest.example.com", db_path="revu.sqlite3")
    event_id = revu.record("signup", {"plan": "pro"})   # stored (committed) on return
    revu.flush(timeout=5.0)                             # True: everything queued was acked
    revu.close()

A ``Client`` owns one core (``revu.Outbox``), one SQLite store and one
background thread. The thread feeds facts to the core and runs the commands
it returns: timers, sends (each on its own short-lived thread), deletes, dead
letters. The store's owner rule (``_sqlite_store``) lets several processes
share one file without sending the same row twice at once. See docs/python.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .. import _commands as c
from .. import _facts as f
from .._capture import CaptureError, capture_event
from .._config import CAPTURE_LIMITS, Config, consent_allows
from .._errors import UsageError
from .._outbox import Outbox
from ._common import RecordError, camel as _camel, now_ms as _now_ms
from ._sqlite_store import SqliteStore
from ._http_transport import post

__all__ = ["Client", "RecordError", "UsageError", "init", "record", "flush", "status", "close", "on", "client"]

log = logging.getLogger("revu")

DEFAULT_DB_PATH = "revu.sqlite3"
DEFAULT_LEASE_MS = 15_000
DEFAULT_CLOSE_TIMEOUT_S = 2.0
_OPTION_NAMES = {"ttl_ms": "ttlMs"}
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class Client:
    """One revu outbox in this process.

    Args:
        api_key: the project's API key (sent in every batch).
        host: the ingest origin (``https://api.revu.ai``); events go to
            ``{host}/v1/behavior/events``.
        db_path: the SQLite file (shared safely by several processes).
        lease_ms: an owner row's life without renewal; rows of a crashed
            process are adopted by another one after it (and after any
            request carrying them has timed out).
        **options: the core's options, snake_case or camelCase (``flush_at``,
            ``flush_interval_ms``, ``max_batch``, ``max_queue``,
            ``request_timeout_ms``, ``compression``, ``debug``, ...).

    Raises:
        UsageError: a bad option (nothing is started).
    """

    def __init__(self, api_key: str, *, host: str | None = None, db_path: str = DEFAULT_DB_PATH,
                 lease_ms: int = DEFAULT_LEASE_MS, **options: Any) -> None:
        if not isinstance(lease_ms, int) or isinstance(lease_ms, bool) or lease_ms < 100:
            raise UsageError("lease_ms must be an integer of at least 100")
        if not isinstance(db_path, (str, os.PathLike)):
            raise UsageError("db_path must be a file path")
        camel = {_camel(k): v for k, v in options.items()}
        for shim_only in ("storage", "storageKey", "assetsUrl"):
            if shim_only in camel:
                raise UsageError(f"unknown option {shim_only!r} (browser only)")
        camel["apiKey"] = api_key
        if host is not None:
            camel["host"] = host
        self.config = Config.from_options(camel)
        self.lease_ms = lease_ms
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.store = SqliteStore(os.fspath(db_path), self.owner, lease_ms)
        self._outbox = Outbox(self.config)
        self._cv = threading.Condition()
        self._pending: list[f.Fact] = []
        self._timers: dict[str, int] = {}
        self._flushes: dict[str, list[Any]] = {}  # flush_id -> [threading.Event, ok]
        self._flush_seq = 0
        self._listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._status: dict[str, Any] = self._outbox.status()
        self._seq = 0
        self._closed = False
        self._halted: str | None = None
        self._sends: set[threading.Thread] = set()
        self._lost_to_others = 0
        self._next_heartbeat_ms = 0
        now = _now_ms()
        adopted = self.store.heartbeat_and_adopt(now, self.config.max_queue)
        self._next_heartbeat_ms = now + lease_ms // 3
        self._pending.append(f.Restored(
            now_ms=now, records=tuple({"id": i, "raw": raw} for i, raw in adopted),
            dead_letters=tuple(self.store.dead_letters()), durable=True, storage="sqlite",
            consent=self.config.consent))
        self._thread = threading.Thread(target=self._run, name="revu-outbox", daemon=True)
        self._thread.start()
        _open_clients.add(self)

    # -- the page's API, for a process ---------------------------------------

    def record(self, event: str, properties: dict[str, Any] | None = None, **options: Any) -> str | None:
        """Record an event: checked, stored (committed) and queued.

        Args:
            event: the event name (1 to 200 UTF-8 bytes).
            properties: a dict of JSON values (or None).
            **options: ``stream``, ``priority`` ("high" / "normal" / "low"),
                ``keys`` (dedupe keys), ``category``, ``ttl_ms``.

        Returns:
            The event_id (a UUID), or None when the consent state does not
            allow the event's category (nothing stored, ``dropped.consent``).

        Raises:
            RecordError: bad input (nothing stored; other events unaffected).
            UsageError: the client is closed.
        """
        if self._closed:
            raise UsageError("revu: record() after close()")
        opts = {_OPTION_NAMES.get(k, k): v for k, v in options.items()}
        if opts.get("pii") not in (None, False):
            raise RecordError("pii_unsupported", "revu (CPython): pii events are not supported: the CPython "
                                                 "runtime has no key store to seal them at rest")
        now = _now_ms()
        with self._cv:
            self._seq = max(now * 1000, self._seq + 1)
            seq = self._seq
        try:
            captured = capture_event(event, properties, opts or None, event_id=str(uuid.uuid4()), now_ms=now,
                                     seq=seq, limits=CAPTURE_LIMITS, max_event_bytes=self.config.max_event_bytes)
        except CaptureError as exc:
            raise RecordError(exc.code, str(exc)) from None
        if not consent_allows(self._status.get("consent", self.config.consent), captured.category):
            log.info("revu: %s not recorded: consent does not allow category %r", event, captured.category)
            return None
        self.store.append(captured.event_id, captured.raw, seq)
        self._push(f.Recorded(now_ms=now, record=captured.raw, durable=True))
        return captured.event_id

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what is queued now and wait for the answer.

        Returns:
            True when everything this client had queued at the call was
            acknowledged; False on the first failed request (events stay
            queued and are retried with backoff), a dead letter, a halted
            core, or when ``timeout`` seconds pass first.
        """
        with self._cv:
            if self._closed or self._halted:
                return False
            self._flush_seq += 1
            flush_id = f"f{self._flush_seq}"
            waiter: list[Any] = [threading.Event(), False]
            self._flushes[flush_id] = waiter
        self._push(f.FlushRequested(now_ms=_now_ms(), flush_id=flush_id))
        done = waiter[0].wait(timeout)
        with self._cv:
            self._flushes.pop(flush_id, None)
        return bool(done and waiter[1])

    def status(self) -> dict[str, Any]:
        """The core's status snapshot (``queued``, ``acked``, ``dropped``,
        ``backoffMs``...) plus ``store``: rows in the file (``rows``), this
        client's (``owned``), ``deadLetters``, ``quarantined``; and
        ``lostToOthers`` (rows another process adopted from this one)."""
        out = dict(self._status)
        out["store"] = {"path": self.store.path, "owner": self.owner, **self.store.counts()}
        out["lostToOthers"] = self._lost_to_others
        out["halted"] = self._halted
        return out

    def on(self, name: str, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``fn(detail)`` (on revu's thread) for each ``name`` event
        (``error``, ``outbox:acked``, ``outbox:failed``, ``outbox:flushed``...).

        Returns:
            A function that unsubscribes.
        """
        with self._cv:
            self._listeners.setdefault(name, []).append(fn)

        def off() -> None:
            with self._cv:
                if fn in self._listeners.get(name, []):
                    self._listeners[name].remove(fn)
        return off

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Flush for up to ``timeout`` seconds, stop, and release this
        client's rows to the next process. Idempotent.

        Returns:
            True when nothing was left queued by this client.
        """
        if self._closed:
            return True
        ok = self.flush(timeout) if timeout > 0 else False
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            for waiter in self._flushes.values():
                waiter[0].set()
        self._thread.join(max(timeout, 1.0))
        for thread in list(self._sends):
            thread.join(0.2)
        try:
            self.store.release()
        finally:
            self.store.close()
        return ok

    # -- the loop --------------------------------------------------------------

    def _push(self, fact: f.Fact) -> None:
        with self._cv:
            self._pending.append(fact)
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._closed:
                        return
                    now = _now_ms()
                    due = [k for k, at in self._timers.items() if at <= now]
                    if self._pending or due or now >= self._next_heartbeat_ms:
                        break
                    wake = min([self._next_heartbeat_ms, *self._timers.values()])
                    self._cv.wait(max(0.001, (wake - now) / 1000))
                for key in due:
                    del self._timers[key]
                facts = self._pending + [f.TimerFired(now_ms=now, key=k) for k in due]
                self._pending = []
            if now >= self._next_heartbeat_ms:
                self._next_heartbeat_ms = now + self.lease_ms // 3
                facts.extend(self._heartbeat(now))
            if self._halted:
                continue
            try:
                commands = self._outbox.handle_all(facts)
            except Exception as exc:  # noqa: BLE001 - a usage bug here must not kill the thread
                log.error("revu: the core refused facts: %s", exc)
                continue
            # The snapshot first: a caller who sees a command's effect (a row
            # deleted) must not read an older status().
            self._status = self._outbox.status()
            for command in commands:
                try:
                    self._execute(command)
                except Exception as exc:  # noqa: BLE001 - e.g. a locked database: reported, loop goes on
                    log.error("revu: %s failed: %s", type(command).__name__, exc)
                    self._emit("error", {"code": "command_failed", "message": f"{type(command).__name__}: {exc}"})

    def _heartbeat(self, now: int) -> list[f.Fact]:
        try:
            room = self.config.max_queue - int(self._status.get("queued", 0))
            adopted = self.store.heartbeat_and_adopt(now, room)
        except Exception as exc:  # noqa: BLE001 - a busy database: try again next beat
            log.warning("revu: store heartbeat failed: %s", exc)
            return []
        if adopted:
            log.info("revu: adopted %d records left by a stopped process", len(adopted))
        return [f.Recorded(now_ms=now, record=raw, durable=True) for _i, raw in adopted]

    def _execute(self, cmd: c.Command) -> None:
        if isinstance(cmd, c.Send):
            self._send(cmd)
        elif isinstance(cmd, c.Delete):
            self.store.delete(cmd.event_ids)
        elif isinstance(cmd, c.StoreDeadLetters):
            self.store.store_dead_letters(cmd.entries)
        elif isinstance(cmd, c.Requeue):
            self.store.requeue(cmd.records)
        elif isinstance(cmd, c.DeleteDeadLetters):
            self.store.delete_dead_letters(cmd.event_ids)
        elif isinstance(cmd, c.Quarantine):
            self.store.quarantine(cmd.entries, _now_ms())
        elif isinstance(cmd, c.SetTimer):
            self._timers[cmd.key] = cmd.at_ms
        elif isinstance(cmd, c.CancelTimer):
            self._timers.pop(cmd.key, None)
        elif isinstance(cmd, c.SettleFlush):
            with self._cv:
                waiter = self._flushes.get(cmd.flush_id)
            if waiter is not None:
                waiter[1] = cmd.ok
                waiter[0].set()
        elif isinstance(cmd, c.Emit):
            self._emit(cmd.name, cmd.detail)
        elif isinstance(cmd, c.ReportStatus):
            self._status = cmd.status
        elif isinstance(cmd, c.PublishRules):
            pass  # a CPython process has its core from the first call: no pre-core capture
        elif isinstance(cmd, c.Halt):
            self._halted = cmd.reason
            log.error("revu: the core halted (%s); records stay stored for the next process", cmd.reason)
            with self._cv:
                for waiter in self._flushes.values():
                    waiter[0].set()
        elif isinstance(cmd, c.Log):
            log.log(_LOG_LEVELS.get(cmd.level, logging.INFO), "revu: %s", cmd.message)
        else:
            raise UsageError(f"unknown command {type(cmd).__name__}")

    def _send(self, cmd: c.Send) -> None:
        started = _now_ms()
        until = started + cmd.timeout_ms + self.lease_ms
        claimed = self.store.claim(cmd.event_ids, until)
        if len(claimed) < len(cmd.event_ids):
            # Adopted by another process while this one stalled past its lease:
            # that process sends them now; here they leave as if acked there.
            self._lost_to_others += len(cmd.event_ids) - len(claimed)
            log.warning("revu: %d records of %s were adopted by another process",
                        len(cmd.event_ids) - len(claimed), cmd.batch_id)
            if not claimed or cmd.kind != "events":
                self._push(f.SendSucceeded(now_ms=_now_ms(), batch_id=cmd.batch_id, status=200, reply=None))
                return
            cmd = _only(cmd, claimed)

        def run() -> None:
            # Not written once the request's own timeout has passed: the claim
            # then has lease_ms to spare, so no other process can have adopted
            # the rows yet (see _http_transport).
            outcome = post(cmd, _now_ms, write_by_ms=started + cmd.timeout_ms)
            try:
                self.store.unclaim(cmd.event_ids)
            except Exception as exc:  # noqa: BLE001 - the claim then simply runs out
                log.warning("revu: could not clear a claim: %s", exc)
            self._push(outcome)
            self._sends.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"revu-send-{cmd.batch_id}", daemon=True)
        self._sends.add(thread)
        thread.start()

    def _emit(self, name: str, detail: Any) -> None:
        with self._cv:
            listeners = list(self._listeners.get(name, ()))
        for fn in listeners:
            try:
                fn(detail)
            except Exception:  # noqa: BLE001 - a listener's bug is its own
                log.exception("revu: an %r listener raised", name)


def _only(cmd: c.Send, keep: set[str]) -> c.Send:
    """The same batch without the envelopes this process no longer owns."""
    import json
    from dataclasses import replace

    body = json.loads(cmd.body)
    body["batch"] = [env for env in body.get("batch", []) if env.get("event_id") in keep]
    return replace(cmd, body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                   event_ids=tuple(i for i in cmd.event_ids if i in keep))


# -- module-level API: one default client per process --------------------------

_client: Client | None = None
_client_lock = threading.Lock()


def init(api_key: str, *, host: str | None = None, db_path: str = DEFAULT_DB_PATH, **options: Any) -> Client:
    """Start the process's default client (see ``Client``). Closed at exit.

    Raises:
        UsageError: bad options, or ``init`` called twice without ``close``.
    """
    global _client
    with _client_lock:
        if _client is not None:
            raise UsageError("revu.init() was already called; call revu.close() first")
        _client = Client(api_key, host=host, db_path=db_path, **options)
        return _client


def client() -> Client:
    """The default client. Raises UsageError before ``init``."""
    if _client is None:
        raise UsageError("call revu.init(api_key, ...) first")
    return _client


def record(event: str, properties: dict[str, Any] | None = None, **options: Any) -> str | None:
    """``Client.record`` on the default client."""
    return client().record(event, properties, **options)


def flush(timeout: float = 10.0) -> bool:
    """``Client.flush`` on the default client."""
    return client().flush(timeout)


def status() -> dict[str, Any]:
    """``Client.status`` on the default client."""
    return client().status()


def on(name: str, fn: Callable[[Any], None]) -> Callable[[], None]:
    """``Client.on`` on the default client."""
    return client().on(name, fn)


def close(timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
    """Close the default client (flushing for up to ``timeout`` s); a later
    ``init`` starts a new one. True when nothing was left queued."""
    global _client
    with _client_lock:
        current, _client = _client, None
    return current.close(timeout) if current is not None else True


_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    """Every client still open at interpreter exit: flush briefly, release rows."""
    close()
    for open_client in list(_open_clients):
        try:
            open_client.close()
        except Exception:  # noqa: BLE001 - exit must go on
            log.exception("revu: closing a client at exit failed")


atexit.register(_close_all_at_exit)
