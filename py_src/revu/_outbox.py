"""The outbox: ``Outbox.handle(fact) -> list[Command]``. See ``_state.py``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from . import _commands as c
from . import _facts as f
from ._config import KEEPALIVE_BUDGET_BYTES, Config
from ._errors import UsageError
from ._policy import backoff_delay_ms, is_transient, parse_retry_after_ms, take_batch
from ._records import CorruptRecord, DeadLetter, Record, decode_dead_letter, decode_record
from ._state import State, Trigger, transition

RETRY_TIMER = "retry"
FLUSH_TIMER = "flush"


@dataclass(frozen=True)
class _Batch:
    batch_id: str
    event_ids: tuple[str, ...]


class Outbox:
    """The delivery state machine for one tab.

    Args:
        config: checked configuration (``Config.from_options``).

    Feed it facts with ``handle``; the first fact must be ``Restored``.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._state = State.STARTING
        self._queue: dict[str, Record] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._in_flight: _Batch | None = None
        self._attempts: Counter[str] = Counter()
        self._failures = 0
        self._backoff_ms = 0
        self._retry_at_ms: int | None = None
        self._timers: dict[str, int] = {}
        self._online = True
        self._durable = True
        self._storage = "unknown"
        self._draining = False
        self._flushes: dict[str, set[str]] = {}
        self._suspects: set[str] = set()
        self._probe_limit: int | None = None
        self._batch_seq = 0
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._last_error: str | None = None
        self._reported_status: dict[str, Any] | None = None
        self._reported_head: tuple[int, str | None] | None = None
        self._out: list[c.Command] = []
        self._handlers = {
            f.Restored: self._on_restored,
            f.Recorded: self._on_recorded,
            f.FlushRequested: self._on_flush_requested,
            f.SendSucceeded: self._on_send_succeeded,
            f.SendFailed: self._on_send_failed,
            f.TimerFired: self._on_timer_fired,
            f.WentOnline: self._on_online,
            f.WentOffline: self._on_offline,
            f.Beaconed: self._on_beaconed,
            f.StorageFailed: self._on_storage_failed,
        }

    # -- public ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def queued_ids(self) -> list[str]:
        """Event ids queued, in send order."""
        return list(self._queue)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead.values())

    def handle(self, fact: f.Fact) -> list[c.Command]:
        """Apply one fact and return the commands it calls for.

        Args:
            fact: what happened (see ``_facts.py``).

        Returns:
            Commands for the shim to run, in order.

        Raises:
            UsageError: an unknown fact, or any fact before ``Restored``.
        """
        return self.handle_all([fact])

    def handle_all(self, facts: list[f.Fact]) -> list[c.Command]:
        """Apply facts in order; status and ``outbox:update`` are reported once
        at the end (the shim hands over whatever piled up since its last call).

        Raises:
            UsageError: an unknown fact, or ``Restored`` anywhere but first.
            Checked before any fact applies, so a refused list changes nothing.
        """
        starting = self._state is State.STARTING
        for index, fact in enumerate(facts):
            if type(fact) not in self._handlers:
                raise UsageError(f"unknown fact {type(fact).__name__}")
            if (starting and index == 0) != isinstance(fact, f.Restored):
                raise UsageError("Restored must be the first fact, and only the first")
        self._out = []
        for fact in facts:
            self._handlers[type(fact)](fact)
        self._report()
        out, self._out = self._out, []
        return out

    def status(self) -> dict[str, Any]:
        """The snapshot ``revu.status()`` shows (camelCase for the page)."""
        return {
            "state": self._state.value,
            "queued": len(self._queue),
            "inFlight": len(self._in_flight.event_ids) if self._in_flight else 0,
            "durable": self._durable,
            "storage": self._storage,
            "online": self._online,
            "failures": self._failures,
            "backoffMs": self._backoff_ms if self._state is State.BACKING_OFF else 0,
            "retryAtMs": self._retry_at_ms if self._state is State.BACKING_OFF else None,
            "acked": self._counts["acked"],
            "requests": self._counts["requests"],
            "retried": self._counts["retried"],
            "beaconed": self._counts["beaconed"],
            "dropped": dict(sorted(self._dropped.items())),
            "deadLettered": len(self._dead),
            "lastError": self._last_error,
        }

    # -- fact handlers -------------------------------------------------------

    def _on_restored(self, fact: f.Restored) -> None:
        self._durable = fact.durable
        self._online = fact.online
        self._storage = fact.storage
        records: list[Record] = []
        for item in fact.records:
            try:
                records.append(decode_record(item.get("raw")))
            except CorruptRecord as exc:
                self._drop_corrupt(str(item.get("id")), exc, queued=True)
        for item in fact.dead_letters:
            try:
                letter = decode_dead_letter(item.get("raw"))
            except CorruptRecord as exc:
                self._drop_corrupt(str(item.get("id")), exc, queued=False)
                continue
            self._dead[letter.record.event_id] = letter
        for record in sorted(records, key=lambda r: r.seq):
            if record.event_id not in self._queue and record.event_id not in self._dead:
                self._queue[record.event_id] = record
        if fact.dropped_before_start:
            self._dropped["overflow"] += fact.dropped_before_start
        self._state = transition(self._state, Trigger.RESTORED)
        self._out.append(c.PublishRules(self.config.rules()))
        self._log("info", f"restored {len(self._queue)} queued, {len(self._dead)} dead letters "
                          f"({self._storage}{'' if self._durable else ', memory only'})")
        self._enforce_caps()
        self._cap_dead_letters()
        self._draining = bool(self._queue)  # the next page load drains what was left
        self._pump(fact.now_ms)

    def _on_recorded(self, fact: f.Recorded) -> None:
        try:
            record = decode_record(fact.record)
        except CorruptRecord as exc:
            self._dropped["invalid"] += 1
            self._error("invalid_record", f"recorded value rejected: {exc}")
            event_id = fact.record.get("env", {}).get("event_id") if isinstance(fact.record, dict) else None
            if isinstance(event_id, str):
                self._out.append(c.Delete((event_id,), reason="invalid"))
            return
        if record.event_id in self._queue or record.event_id in self._dead:
            return  # the same fact twice: nothing new
        if not fact.durable:
            self._durable = False
        self._queue[record.event_id] = record
        self._enforce_caps()
        self._pump(fact.now_ms)

    def _on_flush_requested(self, fact: f.FlushRequested) -> None:
        pending = set(self._queue)
        if not pending:
            self._out.append(c.SettleFlush(fact.flush_id, True))
            return
        self._flushes[fact.flush_id] = pending
        self._draining = True
        if self._state is State.BACKING_OFF:
            self._cancel_retry()
            self._state = transition(self._state, Trigger.MANUAL_FLUSH)
        self._pump(fact.now_ms, force=True)

    def _on_send_succeeded(self, fact: f.SendSucceeded) -> None:
        batch = self._take_in_flight(fact.batch_id)
        if batch is None:
            return
        rejected = _rejected_codes(fact.reply, batch.event_ids)
        if rejected:
            self._dead_letter([self._queue[i] for i in batch.event_ids if i in rejected and i in self._queue],
                              rejected, fact.status, fact.now_ms)
        acked = [i for i in batch.event_ids if i not in rejected and i in self._queue]
        for event_id in acked:
            del self._queue[event_id]
        if acked:
            self._out.append(c.Delete(tuple(acked), reason="acked"))
        self._counts["acked"] += len(acked)
        self._forget(acked, acked=True)
        self._failures = 0
        self._backoff_ms = 0
        self._state = transition(self._state, Trigger.ACK)
        if not self._queue:
            self._draining = False
            self._out.append(c.Emit("outbox:flushed", {"acked": self._counts["acked"]}))
        self._pump(fact.now_ms)

    def _on_send_failed(self, fact: f.SendFailed) -> None:
        batch = self._take_in_flight(fact.batch_id)
        if batch is None:
            return
        reason = f"http_{fact.status}" if fact.status is not None else (fact.error or "network_error")
        self._last_error = reason
        if is_transient(fact.status):
            self._failures += 1
            delay = backoff_delay_ms(self._failures, fact.jitter,
                                     self.config.backoff_base_ms, self.config.backoff_max_ms)
            retry_after = parse_retry_after_ms(fact.retry_after, fact.now_ms)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.config.max_retry_after_ms))
            self._backoff_ms = delay
            self._retry_at_ms = fact.now_ms + delay
            self._set_timer(RETRY_TIMER, self._retry_at_ms)
            self._state = transition(self._state, Trigger.TRANSIENT_FAILURE)
            self._log("warn", f"send {batch.batch_id} failed ({reason}); retry #{self._failures} in {delay} ms")
            for flush_id in list(self._flushes):
                self._settle(flush_id, False)
            return
        self._state = transition(self._state, Trigger.PERMANENT_FAILURE)
        live = [i for i in batch.event_ids if i in self._queue]
        if len(live) <= 1:
            self._dead_letter([self._queue[i] for i in live], {}, fact.status, fact.now_ms, reason=reason)
        else:
            # Bisect: one bad event must not sink the batch. Halve the batch
            # size over the suspects until the poison travels alone.
            self._suspects.update(live)
            self._probe_limit = max(1, len(live) // 2)
            self._log("warn", f"send {batch.batch_id} refused ({reason}); splitting {len(live)} events")
        self._draining = True
        self._pump(fact.now_ms)

    def _on_timer_fired(self, fact: f.TimerFired) -> None:
        if self._timers.get(fact.key) is None or fact.now_ms < self._timers[fact.key]:
            return  # stale or early: the timer was replaced or cancelled
        del self._timers[fact.key]
        if fact.key == RETRY_TIMER:
            if self._state is State.BACKING_OFF:
                self._state = transition(self._state, Trigger.RETRY_DUE)
                self._draining = True
        elif fact.key == FLUSH_TIMER:
            self._draining = bool(self._queue)
        self._pump(fact.now_ms)

    def _on_online(self, fact: f.WentOnline) -> None:
        self._online = True
        self._failures = 0
        self._backoff_ms = 0
        if self._state is State.BACKING_OFF:
            self._cancel_retry()
            self._state = transition(self._state, Trigger.ONLINE)
        self._draining = bool(self._queue)
        self._pump(fact.now_ms)

    def _on_offline(self, fact: f.WentOffline) -> None:
        self._online = False

    def _on_beaconed(self, fact: f.Beaconed) -> None:
        if fact.queued:
            self._counts["beaconed"] += len(fact.event_ids)
        else:
            self._log("warn", f"terminal beacon of {len(fact.event_ids)} events was refused; "
                              "they stay stored for the next page load")

    def _on_storage_failed(self, fact: f.StorageFailed) -> None:
        self._durable = False
        self._last_error = f"storage_{fact.operation}"
        self._error("storage_failed", f"storage {fact.operation} failed ({fact.error}); "
                                      "running memory-only until the next page load")

    # -- sending -------------------------------------------------------------

    def _pump(self, now_ms: int, force: bool = False) -> None:
        """Send the next batch if a trigger holds and the pipe is free."""
        if self._queue and FLUSH_TIMER not in self._timers:
            self._set_timer(FLUSH_TIMER, now_ms + self.config.flush_interval_ms)
        if self._state is not State.IDLE or not self._queue:
            return
        if not (self._online or force):
            return
        if len(self._queue) >= self.config.flush_at:
            self._draining = True
        if self._draining:
            self._send_next(now_ms)

    def _send_next(self, now_ms: int) -> None:
        cfg = self.config
        limit = cfg.max_batch if self._probe_limit is None else min(cfg.max_batch, self._probe_limit)
        records = take_batch(self._queue.values(), limit, cfg.max_batch_bytes, len(cfg.api_key.encode()))
        body = json.dumps(
            {"api_key": cfg.api_key, "batch": [{**r.envelope, "sent_at": now_ms} for r in records]},
            separators=(",", ":"), ensure_ascii=False,
        )
        ids = tuple(r.event_id for r in records)
        if any(self._attempts[i] for i in ids):
            self._counts["retried"] += 1
        self._attempts.update(ids)
        self._batch_seq += 1
        self._in_flight = _Batch(f"b{self._batch_seq}", ids)
        self._counts["requests"] += 1
        self._state = transition(self._state, Trigger.SEND)
        self._out.append(c.Send(
            batch_id=self._in_flight.batch_id,
            url=cfg.endpoint,
            body=body,
            event_ids=ids,
            keepalive=len(body.encode("utf-8")) <= KEEPALIVE_BUDGET_BYTES,
            timeout_ms=cfg.request_timeout_ms,
        ))

    def _take_in_flight(self, batch_id: str) -> _Batch | None:
        if self._in_flight is None or self._in_flight.batch_id != batch_id:
            self._log("debug", f"ignored outcome of unknown batch {batch_id!r}")
            return None
        batch, self._in_flight = self._in_flight, None
        return batch

    # -- removal rules -------------------------------------------------------

    def _enforce_caps(self) -> None:
        """maxQueue: drop the oldest records not in flight (counted, reported)."""
        excess = len(self._queue) - self.config.max_queue
        if excess <= 0:
            return
        in_flight = set(self._in_flight.event_ids) if self._in_flight else set()
        victims = [i for i in self._queue if i not in in_flight][:excess]
        for event_id in victims:
            del self._queue[event_id]
        self._dropped["overflow"] += len(victims)
        self._out.append(c.Delete(tuple(victims), reason="overflow"))
        self._forget(victims, acked=False)
        self._log("warn", f"queue over maxQueue={self.config.max_queue}: dropped {len(victims)} oldest")

    def _dead_letter(self, records: list[Record], codes: dict[str, str], status: int | None,
                     now_ms: int, reason: str = "") -> None:
        entries = []
        for record in records:
            why = f"rejected:{codes[record.event_id]}" if record.event_id in codes else reason
            letter = DeadLetter(record, why, status, self._attempts[record.event_id], now_ms)
            del self._queue[record.event_id]
            self._dead[record.event_id] = letter
            entries.append(letter.to_json())
            self._out.append(c.Emit("outbox:failed", {
                "envelope": record.envelope,
                "error": {"reason": why, "status": status, "attempts": letter.attempts},
            }))
        if entries:
            self._out.append(c.StoreDeadLetters(tuple(entries)))
            self._log("warn", f"dead-lettered {len(entries)} events")
        self._forget([r.event_id for r in records], acked=False)
        self._cap_dead_letters()

    def _cap_dead_letters(self) -> None:
        excess = len(self._dead) - self.config.max_dead_letters
        if excess <= 0:
            return
        oldest = list(self._dead)[:excess]
        for event_id in oldest:
            del self._dead[event_id]
        self._dropped["dead_letter_overflow"] += len(oldest)
        self._out.append(c.DeleteDeadLetters(tuple(oldest)))

    def _drop_corrupt(self, storage_id: str, exc: Exception, queued: bool) -> None:
        self._dropped["corrupt"] += 1
        self._out.append(c.Delete((storage_id,), reason="corrupt") if queued
                         else c.DeleteDeadLetters((storage_id,)))
        self._error("corrupt_record", f"stored record {storage_id!r} is unreadable and was removed: {exc}")

    def _forget(self, event_ids: list[str], acked: bool) -> None:
        """Bookkeeping after records left the queue (acked or by a rule)."""
        for event_id in event_ids:
            self._attempts.pop(event_id, None)
            self._suspects.discard(event_id)
        if not self._suspects:
            self._probe_limit = None
        gone = set(event_ids)
        for flush_id, pending in list(self._flushes.items()):
            if not acked and pending & gone:
                self._settle(flush_id, False)
            else:
                pending -= gone
                if not pending:
                    self._settle(flush_id, True)

    def _settle(self, flush_id: str, ok: bool) -> None:
        del self._flushes[flush_id]
        self._out.append(c.SettleFlush(flush_id, ok))

    # -- timers, reports -----------------------------------------------------

    def _set_timer(self, key: str, at_ms: int) -> None:
        self._timers[key] = at_ms
        self._out.append(c.SetTimer(key, at_ms))

    def _cancel_retry(self) -> None:
        if self._timers.pop(RETRY_TIMER, None) is not None:
            self._out.append(c.CancelTimer(RETRY_TIMER))
        self._retry_at_ms = None

    def _report(self) -> None:
        head = next(iter(self._queue.values()), None)
        key = (len(self._queue), head.event_id if head else None)
        if key != self._reported_head:
            self._reported_head = key
            self._out.append(c.Emit("outbox:update", {"size": key[0], "head": head.envelope if head else None}))
        status = self.status()
        if status != self._reported_status:
            self._reported_status = status
            self._out.append(c.ReportStatus(status))

    def _log(self, level: str, message: str) -> None:
        if self.config.debug or level in ("warn", "error"):
            self._out.append(c.Log(level, message))

    def _error(self, code: str, message: str) -> None:
        self._out.append(c.Log("error", message))
        self._out.append(c.Emit("error", {"code": code, "message": message}))


def _rejected_codes(reply: Any, batch_ids: tuple[str, ...]) -> dict[str, str]:
    """Events the server refused one by one in a 2xx reply."""
    if not isinstance(reply, dict) or not isinstance(reply.get("rejected"), list):
        return {}
    in_batch = set(batch_ids)
    codes: dict[str, str] = {}
    for item in reply["rejected"]:
        if isinstance(item, dict) and item.get("event_id") in in_batch:
            codes[item["event_id"]] = str(item.get("code", "rejected"))
    return codes
