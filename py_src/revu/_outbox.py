"""The outbox: ``Outbox.handle(fact) -> list[Command]``. See ``_state.py``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from . import _commands as c
from . import _facts as f
from ._config import KEEPALIVE_BUDGET_BYTES, UNKNOWN_CONSENT, Config, check_consent, consent_allows
from ._errors import UsageError
from ._policy import (
    backoff_delay_ms, batch_body, eviction_order, is_transient, parse_retry_after_ms, send_order, take_batch,
)
from ._records import (
    CorruptRecord, DeadLetter, Record, decode_dead_letter, decode_record, encode_json, event_id_of, parse_json,
    record_json,
)
from ._state import Batch, Isolation, Lane, State, Trigger

FLUSH_TIMER = "flush"
PACED_TIMER = "paced"
ELSEWHERE_TIMER = "elsewhere"
SLOW_TYPES = frozenset({"slow-2g", "2g"})
EVENTS = "events"
DEFAULT_MUTATION_STREAM = "default"
# Internal errors the core contains before it gives up (``Halt``).
MAX_CORE_ERRORS = 50
# A server reply is untrusted input too.
MAX_REPLY_BYTES = 1_000_000
MAX_REPLY_DEPTH = 16
QUEUE, DEAD = "queue", "dead"


@dataclass
class _Waiter:
    """A ``revu.flush()`` (``final`` False: any failure settles it False) or a
    dead-letter retry (``final`` True: only an ack or failing for good settles)."""

    pending: set[str]
    final: bool = False


@dataclass
class _Index:
    """Lookups kept beside the queue: semantic dedupe keys and the latest
    queued event per coalescing key."""

    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    latest: dict[tuple[str, str | None], str] = field(default_factory=dict)


class Outbox:
    """The delivery state machine for one origin's queue.

    Args:
        config: checked configuration (``Config.from_options``).

    Feed it facts with ``handle``; the first fact must be ``Restored``.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._events = Lane(EVENTS, events=True, state=State.STARTING)
        self._lanes: dict[str, Lane] = {EVENTS: self._events}
        self._isolation = Isolation()
        self._queue: dict[str, Record] = {}  # seq order
        self._mutation_ids: set[str] = set()  # the queued items that are mutations
        self._queued_bytes = 0
        self._index = _Index()
        self._dead: dict[str, DeadLetter] = {}
        self._attempts: Counter[str] = Counter()  # requests that carried the item
        self._answered_failures: Counter[str] = Counter()  # of those, failed with an HTTP status
        self._timers: dict[str, int] = {}
        self._online = True
        self._hidden = False
        self._save_data = False
        self._effective_type: str | None = None
        self._gzip_ok: bool | None = None  # learnt from the endpoint's replies ("auto")
        self._paced_until_ms = 0
        self._elsewhere: dict[str, int] = {}  # event_id -> until when another tab's request may carry it
        self._deferring = False  # inside handle_all: _pump only notes that it is wanted
        self._pump_wanted: tuple[int, bool] | None = None
        self._now_ms = 0
        self._durable = True
        self._storage = "unknown"
        self._consent: Any = config.consent
        self._waiters: dict[str, _Waiter] = {}
        self._batch_seq = 0
        self._next_expiry_ms: int | None = None
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._quarantined: Counter[str] = Counter()
        self._core_errors = 0
        self._halted = False
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
            f.SendSkipped: self._on_send_skipped,
            f.TimerFired: self._on_timer_fired,
            f.WentOnline: self._on_online,
            f.WentOffline: self._on_offline,
            f.Beaconed: self._on_beaconed,
            f.StorageFailed: self._on_storage_failed,
            f.ConsentChanged: self._on_consent_changed,
            f.DeadLetterRetried: self._on_dead_letter_retried,
            f.DeadLetterDropped: self._on_dead_letter_dropped,
            f.VisibilityChanged: self._on_visibility_changed,
            f.NetworkChanged: self._on_network_changed,
        }

    # -- public ---------------------------------------------------------------

    @property
    def state(self) -> State:
        """The events lane's state."""
        return self._events.state

    @property
    def queued_ids(self) -> list[str]:
        """Ids of everything queued (events and mutations), in record order."""
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

        An unexpected error while applying one fact is contained to that fact
        (and to the record it carried, which is quarantined): it is reported
        (``error`` ``core_error``, ``status().coreErrors``), the lanes are made
        live again, and the following facts are applied as usual.

        Raises:
            UsageError: an unknown fact, or ``Restored`` anywhere but first.
            Checked before any fact applies, so a refused list changes nothing.
        """
        starting = self._events.state is State.STARTING
        for index, fact in enumerate(facts):
            if type(fact) not in self._handlers:
                raise UsageError(f"unknown fact {type(fact).__name__}")
            if (starting and index == 0) != isinstance(fact, f.Restored):
                raise UsageError("Restored must be the first fact, and only the first")
        self._out = []
        self._deferring, self._pump_wanted = True, None  # handlers ask for a pump; it runs once, below
        for fact in facts:
            problem = f.fact_problem(fact)
            if problem is not None:
                self._error("bad_fact", f"revu core refused a {type(fact).__name__}: {problem}")
                if isinstance(fact, f.Restored):
                    self._events.fire(Trigger.RESTORED)  # refused, but the core is started
                    self._out.append(c.PublishRules(self.config.rules()))
                continue
            self._now_ms = max(self._now_ms, fact.now_ms)
            try:
                self._handlers[type(fact)](fact)
            except Exception as exc:  # noqa: BLE001 - one fact must never stop the core
                self._contain(fact, exc)
        self._deferring = False
        if self._pump_wanted is not None:
            now_ms, force = self._pump_wanted
            self._pump_wanted = None
            try:
                self._pump(max(now_ms, self._now_ms), force)
            except Exception as exc:  # noqa: BLE001 - contained like a fact's error
                self._contain(None, exc)
        try:
            self._report()
        except Exception as exc:  # noqa: BLE001
            self._contain(None, exc)
        out, self._out = self._out, []
        return out

    def status(self) -> dict[str, Any]:
        """The snapshot ``revu.status()`` shows (camelCase for the page)."""
        ev = self._events
        backing_off = ev.state is State.BACKING_OFF
        return {
            "state": ev.state.value,
            "queued": len(self._queue),
            "queuedBytes": self._queued_bytes,
            "inFlight": sum(len(lane.in_flight.event_ids) for lane in self._lanes.values() if lane.in_flight),
            "durable": self._durable,
            "storage": self._storage,
            "online": self._online,
            "consent": self._consent,
            "failures": ev.failures,
            "backoffMs": ev.backoff_ms if backing_off else 0,
            "retryAtMs": ev.retry_at_ms if backing_off else None,
            "streams": {
                lane.name[2:]: {"state": lane.state.value, "failures": lane.failures,
                                "retryAtMs": lane.retry_at_ms if lane.state is State.BACKING_OFF else None}
                for lane in self._lanes.values() if not lane.events
            },
            "acked": self._counts["acked"],
            "requests": self._counts["requests"],
            "retried": self._counts["retried"],
            "beaconed": self._counts["beaconed"],
            "dropped": dict(sorted(self._dropped.items())),
            "deadLettered": len(self._dead),
            "quarantined": dict(sorted(self._quarantined.items())),
            "repaired": self._counts["repaired"],
            "coreErrors": self._core_errors,
            "lastError": self._last_error,
            "compression": self._compression(),
            "network": {"saveData": self._save_data, "effectiveType": self._effective_type, "slow": self._slow},
            "hidden": self._hidden,
        }

    # -- fact handlers -------------------------------------------------------

    def _on_restored(self, fact: f.Restored) -> None:
        # Leave STARTING first: whatever goes wrong below, the core is live.
        self._events.fire(Trigger.RESTORED)
        self._durable = fact.durable is not False
        self._online = fact.online is not False
        self._hidden = fact.hidden is True
        self._hold_elsewhere(dict(_counts(fact.in_flight_elsewhere)), fact.now_ms)
        self._storage = str(fact.storage)[:40]
        self._set_consent(fact.consent)
        self._out.append(c.PublishRules(self.config.rules()))
        for reason, count in _counts(fact.dropped_before_start):
            self._dropped[reason] += count
        for reason, count in _counts(fact.quarantined_before_start):
            self._quarantined[reason] += count
        if isinstance(fact.repaired_before_start, int) and fact.repaired_before_start > 0:
            self._counts["repaired"] += fact.repaired_before_start
        records: list[Record] = []
        bad: list[tuple[str, str, str]] = []  # (storage id, area, reason)
        for area, items in ((QUEUE, fact.records), (DEAD, fact.dead_letters)):
            for item in items:
                try:
                    if not (isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]):
                        self._error("bad_fact", "restored: an item without a storage id was ignored")
                        continue
                    if area == QUEUE:
                        records.append(decode_record(item.get("raw"), key=item["id"]))
                    else:
                        letter = decode_dead_letter(item.get("raw"), key=item["id"])
                        self._dead[letter.record.event_id] = letter
                except CorruptRecord as exc:
                    bad.append((item["id"], area, exc.reason))
                except Exception as exc:  # noqa: BLE001 - one stored value never stops the start
                    self._count_core_error(exc)
                    bad.append((item["id"], area, "core_error"))
        if bad:
            self._quarantine(bad)
        for record in sorted(records, key=lambda r: r.seq):
            try:
                self._admit(record)
            except Exception as exc:  # noqa: BLE001
                self._count_core_error(exc)
                self._quarantine([(record.event_id, QUEUE, "core_error")])
        self._purge_disallowed()
        self._log("info", f"core started: {len(self._queue)} queued (stored by earlier pages or recorded while it "
                          f"loaded), {len(self._dead)} dead letters ({self._storage}"
                          f"{'' if self._durable else ', memory only'})")
        self._enforce_caps()
        self._cap_dead_letters()
        self._events.flush()  # the next page load drains what was left
        self._pump(fact.now_ms)

    def _on_recorded(self, fact: f.Recorded) -> None:
        try:
            record = decode_record(fact.record)
        except CorruptRecord as exc:
            event_id = event_id_of(fact.record)
            if event_id is not None:
                self._quarantine([(event_id, QUEUE, exc.reason)])
            else:
                self._dropped["invalid"] += 1
                self._error("invalid_record", f"a recorded value without a readable event_id was refused: {exc}")
            return
        if self._admit(record):
            if fact.durable is False and not fact.held:  # only a queued record says anything about storage
                self._durable = False
            self._enforce_caps()
        self._pump(fact.now_ms)

    def _on_flush_requested(self, fact: f.FlushRequested) -> None:
        pending = set(self._queue) if fact.event_ids is None else set(fact.event_ids) & set(self._queue)
        if not pending:
            self._out.append(c.SettleFlush(fact.flush_id, True))
            return
        if any(not consent_allows(self._consent, self._queue[i].category) for i in pending):
            self._log("warn", "flush: events wait for a consent state; revu.consent() releases them")
            self._out.append(c.SettleFlush(fact.flush_id, False))
            return
        self._waiters[fact.flush_id] = _Waiter(pending)
        for lane in self._lanes.values():
            if lane.state is State.BACKING_OFF:
                self._cancel_retry(lane)
                lane.resume(Trigger.MANUAL_FLUSH)
        self._events.flush()
        self._pump(fact.now_ms, force=True)

    def _on_send_succeeded(self, fact: f.SendSucceeded) -> None:
        found = self._finish(fact.batch_id)
        if found is None:
            return
        lane, batch = found
        reply = _parse_reply(fact.reply)
        live = [i for i in batch.event_ids if i in self._queue]
        if batch.kind == "mutation" and isinstance(reply, dict) and reply.get("ok") is False:
            # The ack contract: {"ok": false, "code"} refuses the write for good.
            lane.refused()
            reason = f"refused:{_short(reply.get('code'), 'refused')}"
            self._last_error = reason
            self._dead_letter([self._queue[i] for i in live], {}, _status(fact.status), fact.now_ms, reason=reason)
            self._pump(fact.now_ms)
            return
        if batch.kind == "events" and self.config.compression == "auto" and isinstance(reply, dict):
            accepts = reply.get("accept_encoding")
            if isinstance(accepts, list) and self._gzip_ok is not False:
                learnt = "gzip" in accepts
                if learnt != self._gzip_ok:
                    self._log("info", f"the endpoint {'accepts' if learnt else 'does not accept'} gzip bodies")
                self._gzip_ok = learnt
        rejected = _rejected_codes(reply, batch.event_ids) if batch.kind == "events" else {}
        if rejected:
            self._dead_letter([self._queue[i] for i in live if i in rejected], rejected,
                              _status(fact.status), fact.now_ms)
        acked = [i for i in live if i not in rejected]
        self._drop(acked, "acked")
        self._log("info", f"acked {batch.batch_id}: {_items(len(acked), batch.kind)} (HTTP {_status(fact.status)})"
                          + (f", {len(rejected)} rejected" if rejected else ""))
        lane.acked()
        if not self._queue:
            self._out.append(c.Emit("outbox:flushed", {"acked": self._counts["acked"]}))
        self._pump(fact.now_ms)

    def _on_send_failed(self, fact: f.SendFailed) -> None:
        found = self._finish(fact.batch_id)
        if found is None:
            return
        lane, batch = found
        status = _status(fact.status)
        if status == 415 and batch.encoding is not None:
            # The endpoint refuses compressed bodies: stop compressing, and
            # retry (this failure is the encoding's, not the events').
            self._gzip_ok = False
            self._log("warn", "the endpoint refused a gzip body (415); sending uncompressed from now on")
            status = None
        reason = f"http_{status}" if status is not None else _short(fact.error, "network_error")
        self._last_error = reason
        live = [i for i in batch.event_ids if i in self._queue]
        # maxAttempts counts failures the server answered: an outage of the
        # network must never use up an event's attempts.
        if status is not None:
            self._answered_failures.update(live)
        limit = self.config.max_attempts
        out_of_attempts = bool(limit) and any(self._answered_failures[i] >= limit for i in live)
        if is_transient(status) and not out_of_attempts:
            delay = backoff_delay_ms(lane.failures + 1, _unit(fact.jitter),
                                     self.config.backoff_base_ms, self.config.backoff_max_ms)
            retry_after = parse_retry_after_ms(fact.retry_after if isinstance(fact.retry_after, str) else None,
                                               fact.now_ms)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.config.max_retry_after_ms))
            lane.back_off(delay, fact.now_ms)
            self._set_timer(lane.timer, fact.now_ms + delay)
            self._log("warn", f"{lane.name}: send {batch.batch_id} failed ({reason}); "
                              f"retry #{lane.failures} in {delay} ms")
            self._out.append(c.Emit("outbox:retry", {
                "kind": batch.kind, "batchId": batch.batch_id, "eventIds": live, "reason": reason,
                "status": status, "attempt": lane.failures, "delayMs": delay, "retryAtMs": fact.now_ms + delay,
            }))
            for waiter_id, waiter in list(self._waiters.items()):
                if not waiter.final:
                    self._settle(waiter_id, False)
            return
        if out_of_attempts:
            reason = f"max_attempts:{reason}"
        lane.refused()
        if batch.kind == "mutation" or len(batch.event_ids) == 1:
            self._dead_letter([self._queue[i] for i in live], {}, status, fact.now_ms, reason=reason)
            self._isolation.poison_found()
        elif live:
            # (Sent with several events: even if one survives here, the refusal
            # may have been a batch-mate's that consent purged meanwhile.)
            # Bisect: one bad event must not sink the batch.
            self._isolation.refused(live)
            self._log("warn", f"send {batch.batch_id} refused ({reason}); splitting {len(live)} events")
        self._events.flush()
        self._pump(fact.now_ms)

    def _on_timer_fired(self, fact: f.TimerFired) -> None:
        if self._timers.get(fact.key) is None or fact.now_ms < self._timers[fact.key]:
            return  # stale or early: the timer was replaced or cancelled
        del self._timers[fact.key]
        if fact.key in (FLUSH_TIMER, PACED_TIMER):
            self._events.flush()
        if fact.key == ELSEWHERE_TIMER:
            self._elsewhere = {i: t for i, t in self._elsewhere.items() if t > fact.now_ms}
            if self._elsewhere:
                self._set_timer(ELSEWHERE_TIMER, min(self._elsewhere.values()))
            self._events.flush()
        for lane in self._lanes.values():
            if fact.key == lane.timer and lane.state is State.BACKING_OFF:
                lane.resume(Trigger.RETRY_DUE)
        self._pump(fact.now_ms)

    def _on_online(self, fact: f.WentOnline) -> None:
        self._online = True
        for lane in self._lanes.values():
            lane.reset_backoff()
            if lane.state is State.BACKING_OFF:
                self._cancel_retry(lane)
                lane.resume(Trigger.ONLINE)
        self._events.flush()
        self._pump(fact.now_ms)

    def _on_offline(self, fact: f.WentOffline) -> None:
        self._online = False

    def _on_visibility_changed(self, fact: f.VisibilityChanged) -> None:
        self._hidden = fact.hidden

    def _on_network_changed(self, fact: f.NetworkChanged) -> None:
        was_slow = self._slow
        self._save_data = fact.save_data
        self._effective_type = fact.effective_type[:20] if fact.effective_type else None
        if was_slow != self._slow:
            self._log("info", f"network is {'slow or metered: large drains are paced' if self._slow else 'fast again'}")
        if was_slow and not self._slow:
            self._events.flush()
            self._pump(fact.now_ms)

    def _on_beaconed(self, fact: f.Beaconed) -> None:
        count = len(fact.event_ids) if isinstance(fact.event_ids, tuple) else 0
        if fact.queued:
            self._counts["beaconed"] += count
            self._hold_elsewhere({i: fact.until_ms for i in fact.event_ids if i in self._queue}, fact.now_ms)
        else:
            self._log("warn", f"terminal beacon of {count} events was refused; "
                              "they stay stored for the next page load")

    def _on_storage_failed(self, fact: f.StorageFailed) -> None:
        self._durable = False
        operation = _short(fact.operation, "write")
        self._last_error = f"storage_{operation}"
        self._error("storage_failed", f"storage {operation} failed ({str(fact.error)[:200]}); "
                                      "running memory-only until the next page load")

    def _on_consent_changed(self, fact: f.ConsentChanged) -> None:
        self._set_consent(fact.consent)
        self._purge_disallowed()
        self._events.flush()
        self._pump(fact.now_ms)

    def _on_dead_letter_retried(self, fact: f.DeadLetterRetried) -> None:
        letter = self._dead.get(fact.event_id)
        if letter is None or not consent_allows(self._consent, letter.record.category):
            why = "is not a dead letter" if letter is None else "is not allowed by the current consent"
            self._error("unknown_entry", f"retry: {str(fact.event_id)[:80]!r} {why}")
            self._out.append(c.SettleFlush(fact.flush_id, False))
            return
        del self._dead[fact.event_id]
        self._insert(letter.record)
        self._out.append(c.Requeue((record_json(letter.record),)))
        self._waiters[fact.flush_id] = _Waiter({fact.event_id}, final=True)
        self._enforce_caps()
        self._events.flush()
        self._pump(fact.now_ms)

    def _on_dead_letter_dropped(self, fact: f.DeadLetterDropped) -> None:
        if fact.event_id not in self._dead:
            self._error("unknown_entry", f"drop: {str(fact.event_id)[:80]!r} is not a dead letter")
            return
        del self._dead[fact.event_id]
        self._dropped["by_page"] += 1
        self._out.append(c.DeleteDeadLetters((fact.event_id,)))

    # -- admission -----------------------------------------------------------

    def _admit(self, record: Record) -> bool:
        """Queue a new record unless a rule says otherwise (each rule counted).

        While the consent state is unknown, a record it cannot allow is still
        queued (held: never sent, never purged) until the page sets a state.
        """
        if record.event_id in self._queue or record.event_id in self._dead:
            return False  # the same fact twice: nothing new
        if self._consent != UNKNOWN_CONSENT and not consent_allows(self._consent, record.category):
            self._drop([record.event_id], "consent")
            return False
        for pair in record.keys.items():
            if pair in self._index.keys:
                self._drop([record.event_id], "duplicate")
                return False
        rule = self._coalesce_rule(record)
        if rule and "windowMs" in rule:
            previous = self._queue.get(self._index.latest.get((record.event, record.stream), ""))
            if (previous is not None and previous.event_id not in self._in_flight_ids()
                    and record.created_at - previous.created_at <= rule["windowMs"]):
                self._drop([previous.event_id], "coalesced")
        self._insert(record)
        return True

    def _insert(self, record: Record) -> None:
        last = next(reversed(self._queue.values()), None)
        self._queue[record.event_id] = record
        if record.mutation is not None:
            self._mutation_ids.add(record.event_id)
        if last is not None and last.seq > record.seq:  # a requeue or a late restore: keep seq order
            self._queue = dict(sorted(self._queue.items(), key=lambda kv: kv[1].seq))
        self._queued_bytes += record.size_bytes
        for pair in record.keys.items():
            self._index.keys[pair] = record.event_id
        if self._coalesce_rule(record):
            self._index.latest[(record.event, record.stream)] = record.event_id
        deadline = self._deadline(record)
        if self._next_expiry_ms is None or deadline < self._next_expiry_ms:
            self._next_expiry_ms = deadline

    def _remove(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            record = self._queue.pop(event_id, None)
            if record is None:
                continue
            self._mutation_ids.discard(event_id)
            self._queued_bytes -= record.size_bytes
            for pair in record.keys.items():
                if self._index.keys.get(pair) == event_id:
                    del self._index.keys[pair]
            latest_key = (record.event, record.stream)
            if self._index.latest.get(latest_key) == event_id:
                del self._index.latest[latest_key]

    def _drop(self, event_ids: list[str], reason: str) -> None:
        """Items leave the queue and storage: acknowledged (``reason`` "acked")
        or by a counted rule (``dropped[reason]``). Also for a record that was
        stored but never queued (consent, duplicate)."""
        if not event_ids:
            return
        self._remove(event_ids)
        self._out.append(c.Delete(tuple(event_ids), reason=reason))
        if reason == "acked":
            self._counts["acked"] += len(event_ids)
            self._out.append(c.Emit("outbox:acked", {"eventIds": list(event_ids)}))
        else:
            self._dropped[reason] += len(event_ids)
            self._out.append(c.Emit("outbox:dropped", {"eventIds": list(event_ids), "reason": reason}))
            self._log("info" if reason in ("consent", "duplicate", "coalesced") else "warn",
                      f"dropped {len(event_ids)} ({reason})")
        self._forget(event_ids, acked=reason == "acked")

    def _coalesce_rule(self, record: Record) -> dict[str, int] | None:
        return None if record.mutation is not None else self.config.coalesce_rule(record.event)

    def _deadline(self, record: Record) -> int:
        """When the record expires: ``ttl_ms`` (per event or coalescing rule), else ``maxAgeMs``."""
        deadline = record.created_at + self.config.max_age_ms
        ttl = record.meta.get("ttl_ms") or (self._coalesce_rule(record) or {}).get("ttlMs")
        return min(deadline, record.created_at + ttl) if ttl else deadline

    def _sendable(self, record: Record) -> bool:
        """Consent allows it (while the state is unknown, only "necessary" items
        go), and no request another tab started may still carry it."""
        if not consent_allows(self._consent, record.category):
            return False
        until = self._elsewhere.get(record.event_id)
        return until is None or until <= self._now_ms

    @property
    def _slow(self) -> bool:
        """A metered or slow connection (Network Information API): large drains are paced."""
        return self._save_data or self._effective_type in SLOW_TYPES

    def _compression(self) -> str:
        mode = self.config.compression
        if mode == "off" or self._gzip_ok is False:
            return "off"
        if mode == "gzip" or self._gzip_ok:
            return "gzip"
        return "pending"

    # -- sending -------------------------------------------------------------

    def _pump(self, now_ms: int, force: bool = False) -> None:
        """Send what the triggers call for, on every lane whose pipe is free.

        While ``handle_all`` applies a list of facts, the pump runs once, after
        the last of them (the facts of one call are simultaneous): a burst of
        10,000 recorded events is one pass over the queue, not 10,000.
        """
        if self._deferring:
            wanted = self._pump_wanted
            self._pump_wanted = (now_ms, force) if wanted is None else (max(now_ms, wanted[0]), force or wanted[1])
            return
        self._expire(now_ms)
        if not (self._online or force):
            # Nothing is sent offline: only the interval timer may need arming.
            if FLUSH_TIMER not in self._timers and any(self._sendable(r) for r in self._queue.values()):
                self._set_timer(FLUSH_TIMER, now_ms + self.config.flush_interval_ms)
            return
        ev = self._events
        events: list[Record] = []
        heads: dict[str, Record] = {}  # mutation lane -> its head
        # The events lane looks at the queue only when it may start a drain
        # (idle or draining); sending or backing off, only the mutation
        # streams' heads matter, so a record added meanwhile costs no pass.
        scan_events = ev.state in (State.IDLE, State.DRAINING)
        candidates = (self._queue.values() if scan_events
                      else sorted((self._queue[i] for i in self._mutation_ids), key=lambda r: r.seq))
        for record in candidates:
            if not self._sendable(record):
                continue
            if record.mutation is None:
                events.append(record)
            else:
                heads.setdefault(_lane_name(record), record)
        if FLUSH_TIMER not in self._timers and (
                events or heads or (not scan_events and any(self._sendable(r) for r in self._queue.values()))):
            self._set_timer(FLUSH_TIMER, now_ms + self.config.flush_interval_ms)
        if len(events) >= self.config.flush_at:
            ev.flush()
        if ev.free:
            events = self._pace(events, now_ms, force)
            if events:
                self._send_events(events, now_ms)
            else:
                ev.drained()
        for name, head in heads.items():
            lane = self._lanes.setdefault(name, Lane(name))
            if lane.free:
                self._send_mutation(lane, head, now_ms)
        for name in [n for n, lane in self._lanes.items()
                     if not lane.events and n not in heads and lane.state is State.IDLE]:
            del self._lanes[name]  # an idle, empty stream: forget it

    def _pace(self, events: list[Record], now_ms: int, force: bool) -> list[Record]:
        """On a slow or metered connection a drain sends one ``maxBatch``
        request per ``slowDrainIntervalMs``; high-priority events and
        ``revu.flush()`` never wait."""
        if not self._slow or force or any(not w.final for w in self._waiters.values()):
            return events
        if now_ms >= self._paced_until_ms:
            self._paced_until_ms = now_ms + self.config.slow_drain_interval_ms
            return events
        high = [r for r in events if r.priority == "high"]
        if not high and self._timers.get(PACED_TIMER) != self._paced_until_ms:
            self._set_timer(PACED_TIMER, self._paced_until_ms)
        return high

    def _send_events(self, records: list[Record], now_ms: int) -> None:
        """One batch: by priority and stream order, within count and bytes.

        A backlog drains in large batches (``drainBatch`` events,
        ``drainBatchBytes``) while the page is visible and the connection is
        not slow: sent without keepalive (over its budget), compressed when
        the endpoint accepts it. A hidden page (an unload may be near) and a
        slow connection keep to ``maxBatch`` / ``maxBatchBytes``.
        """
        cfg = self.config
        large = not self._hidden and not self._slow and len(records) > cfg.max_batch
        count = max(cfg.drain_batch, cfg.max_batch) if large else cfg.max_batch
        budget = max(cfg.drain_batch_bytes, cfg.max_batch_bytes) if large else cfg.max_batch_bytes
        batch = take_batch(send_order(records), self._isolation.batch_limit(count), budget, cfg.api_key, now_ms)
        body = batch_body(cfg.api_key, (r.env_json for r in batch), now_ms)
        size = len(body.encode("utf-8"))
        encoding = "gzip" if self._compression() == "gzip" and size >= cfg.compress_min_bytes else None
        self._start(self._events, tuple(r.event_id for r in batch), size, c.Send(
            batch_id="", url=cfg.endpoint, body=body, event_ids=(),
            keepalive=size <= KEEPALIVE_BUDGET_BYTES, timeout_ms=cfg.request_timeout_ms, encoding=encoding,
        ))

    def _send_mutation(self, lane: Lane, record: Record, now_ms: int) -> None:
        m = record.mutation
        assert m is not None
        headers = {} if isinstance(m.body, str) or m.body is None else {"Content-Type": "application/json"}
        headers.update(m.headers)
        headers["Idempotency-Key"] = m.idempotency_key
        body = m.body if isinstance(m.body, str) else ("" if m.body is None else encode_json(m.body))
        size = len(body.encode("utf-8"))
        self._start(lane, (record.event_id,), size, c.Send(
            batch_id="", url=m.url, body=body, event_ids=(), method=m.method, headers=headers,
            keepalive=size <= KEEPALIVE_BUDGET_BYTES, timeout_ms=self.config.request_timeout_ms, kind="mutation",
        ))

    def _start(self, lane: Lane, ids: tuple[str, ...], size: int, send: c.Send) -> None:
        if any(self._attempts[i] for i in ids):
            self._counts["retried"] += 1
        self._attempts.update(ids)
        self._batch_seq += 1
        batch_id = f"b{self._batch_seq}"
        lane.start(Batch(batch_id, ids, send.kind, send.encoding))
        self._counts["requests"] += 1
        self._out.append(replace(send, batch_id=batch_id, event_ids=ids))
        self._out.append(c.Emit("outbox:sent", {"batchId": batch_id, "kind": send.kind, "eventIds": list(ids),
                                                "bytes": size, "encoding": send.encoding}))
        self._log("info", f"sent {batch_id}: {_items(len(ids), send.kind)}, {size} bytes"
                          + (f" ({send.encoding})" if send.encoding else "") + ("" if send.keepalive else ", no keepalive"))

    def _on_send_skipped(self, fact: f.SendSkipped) -> None:
        found = self._finish(fact.batch_id)
        if found is None:
            return
        lane, batch = found
        lane.fire(Trigger.SKIPPED)
        self._log("debug", f"{lane.name}: send {batch.batch_id} not started (a beacon carries its events)")
        self._pump(fact.now_ms)

    def _hold_elsewhere(self, until_by_id: dict[str, int], now_ms: int) -> None:
        """Send none of these ids before their time: a request another page or
        tab started (or this page's beacon) may still carry them."""
        for event_id, until in until_by_id.items():
            if isinstance(until, int) and not isinstance(until, bool) and until > now_ms:
                self._elsewhere[event_id] = max(until, self._elsewhere.get(event_id, 0))
        if self._elsewhere:
            self._set_timer(ELSEWHERE_TIMER, min(self._elsewhere.values()))

    def _finish(self, batch_id: str) -> tuple[Lane, Batch] | None:
        for lane in self._lanes.values():
            batch = lane.finish(batch_id)
            if batch is not None:
                return lane, batch
        self._log("debug", f"ignored outcome of unknown batch {str(batch_id)[:40]!r}")
        return None

    def _in_flight_ids(self) -> set[str]:
        return {i for lane in self._lanes.values() if lane.in_flight for i in lane.in_flight.event_ids}

    # -- removal rules -------------------------------------------------------

    def _enforce_caps(self) -> None:
        """maxQueue and maxQueueBytes: evict low-priority and coalescible events
        first, then the oldest; never what is in flight (counted, reported)."""
        cfg = self.config
        if len(self._queue) <= cfg.max_queue and self._queued_bytes <= cfg.max_queue_bytes:
            return
        in_flight = self._in_flight_ids()
        order = eviction_order((r for r in self._queue.values() if r.event_id not in in_flight),
                               lambda r: self._coalesce_rule(r) is not None)
        victims: dict[str, list[str]] = {"overflow": [], "overflow_bytes": []}
        count, size = len(self._queue), self._queued_bytes
        for record in order:
            if count > cfg.max_queue:
                reason = "overflow"
            elif size > cfg.max_queue_bytes:
                reason = "overflow_bytes"
            else:
                break
            count -= 1
            size -= record.size_bytes
            victims[reason].append(record.event_id)
        for reason, ids in victims.items():
            self._drop(ids, reason)

    def _expire(self, now_ms: int) -> None:
        """Drop queued events past their TTL or ``maxAgeMs`` (counted)."""
        if self._next_expiry_ms is None or now_ms < self._next_expiry_ms:
            return
        in_flight = self._in_flight_ids()
        gone: dict[str, list[str]] = {"expired": [], "max_age": []}
        next_expiry: int | None = None
        for record in self._queue.values():
            deadline = self._deadline(record)
            if now_ms >= deadline and record.event_id not in in_flight:
                aged = now_ms - record.created_at >= self.config.max_age_ms
                gone["max_age" if aged else "expired"].append(record.event_id)
            elif next_expiry is None or deadline < next_expiry:
                next_expiry = deadline
        self._next_expiry_ms = next_expiry
        for reason, ids in gone.items():
            self._drop(ids, reason)

    def _purge_disallowed(self) -> None:
        """What consent no longer allows leaves the queue and the dead letters.

        In-flight items too: the shim has already purged them from storage, and
        a request on the wire cannot be recalled; its outcome is then ignored.
        An unknown consent state purges nothing (see ``_admit``).
        """
        if self._consent == UNKNOWN_CONSENT:
            return
        self._drop([r.event_id for r in self._queue.values() if not consent_allows(self._consent, r.category)],
                   "consent")
        dead = [i for i, d in self._dead.items() if not consent_allows(self._consent, d.record.category)]
        if dead:
            for event_id in dead:
                del self._dead[event_id]
            self._dropped["consent"] += len(dead)
            self._out.append(c.DeleteDeadLetters(tuple(dead)))

    def _dead_letter(self, records: list[Record], codes: dict[str, str], status: int | None,
                     now_ms: int, reason: str = "") -> None:
        entries = []
        for record in records:
            why = f"rejected:{codes[record.event_id]}" if record.event_id in codes else reason
            letter = DeadLetter(record, why, status, self._attempts[record.event_id], now_ms)
            self._remove([record.event_id])
            self._dead[record.event_id] = letter
            entries.append(letter.to_json())
            self._out.append(c.Emit("outbox:failed", {
                "kind": "mutation" if record.mutation is not None else "event",
                "envelope": record.envelope,
                "mutation": record.mutation.to_json() if record.mutation is not None else None,
                "error": {"reason": why, "status": status, "attempts": letter.attempts},
            }))
        if entries:
            self._out.append(c.StoreDeadLetters(tuple(entries)))
            self._log("warn", f"dead-lettered {len(entries)} items")
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

    def _quarantine(self, items: list[tuple[str, str, str]]) -> None:
        """Set stored values aside (storage id, area, reason): counted by
        reason, reported, never sent or read as records again."""
        for storage_id, area, reason in items:
            self._quarantined[reason] += 1
            if area == QUEUE:
                if storage_id in self._queue:
                    self._remove([storage_id])
                    self._forget([storage_id], acked=False)
            else:
                self._dead.pop(storage_id, None)
        self._out.append(c.Quarantine(tuple({"id": i, "area": a, "reason": r} for i, a, r in items)))
        by_reason = Counter(r for _i, _a, r in items)
        summary = ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items()))
        self._error("quarantined", f"{len(items)} stored value(s) set aside ({summary}); "
                                   "revu.outbox.entries() lists them")

    def _forget(self, event_ids: list[str], acked: bool) -> None:
        """Bookkeeping after items left the queue (acked, or by a rule)."""
        for event_id in event_ids:
            self._attempts.pop(event_id, None)
            self._answered_failures.pop(event_id, None)
        self._isolation.forget(event_ids)
        gone = set(event_ids)
        for waiter_id, waiter in list(self._waiters.items()):
            hit = waiter.pending & gone
            if not hit:
                continue
            if not acked:
                self._settle(waiter_id, False)
                continue
            waiter.pending -= hit
            if not waiter.pending:
                self._settle(waiter_id, True)

    def _settle(self, waiter_id: str, ok: bool) -> None:
        del self._waiters[waiter_id]
        self._out.append(c.SettleFlush(waiter_id, ok))

    def _set_consent(self, state: Any) -> None:
        if state == UNKNOWN_CONSENT:
            self._consent = UNKNOWN_CONSENT
            return
        try:
            check_consent(state)
        except UsageError as exc:
            self._error("invalid_consent", f"{exc}; consent stays {self._consent!r}")
            return
        self._consent = state

    # -- containment -----------------------------------------------------------

    def _contain(self, fact: f.Fact | None, exc: Exception) -> None:
        """An unexpected error while applying ``fact``: set it (and its record)
        aside, make every lane live again, report, and carry on."""
        try:
            self._count_core_error(exc)
            if isinstance(fact, f.Recorded):
                event_id = event_id_of(fact.record)
                if event_id is not None:
                    self._quarantine([(event_id, QUEUE, "core_error")])
            for lane in self._lanes.values():
                if lane.recover():
                    self._events.flush()
            if self._events.state is State.STARTING:
                self._events.fire(Trigger.RESTORED)
            name = type(fact).__name__ if fact is not None else "its report"
            self._error("core_error", f"the core could not handle {name} "
                                      f"({type(exc).__name__}: {str(exc)[:300]}); it was set aside")
        except Exception:  # noqa: BLE001 - the last line: never raise out of handle_all
            self._out.append(c.Log("error", "revu core: an internal error could not be contained cleanly"))

    def _count_core_error(self, exc: Exception) -> None:
        self._core_errors += 1
        self._last_error = "core_error"
        self._out.append(c.Log("error", f"revu core: {type(exc).__name__}: {str(exc)[:300]}"))
        if self._core_errors > MAX_CORE_ERRORS and not self._halted:
            self._halted = True
            self._out.append(c.Halt(f"{self._core_errors} internal errors"))

    # -- timers, reports -----------------------------------------------------

    def _set_timer(self, key: str, at_ms: int) -> None:
        self._timers[key] = at_ms
        self._out.append(c.SetTimer(key, at_ms))

    def _cancel_retry(self, lane: Lane) -> None:
        if self._timers.pop(lane.timer, None) is not None:
            self._out.append(c.CancelTimer(lane.timer))

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
        """A debug line: one per decision with ``debug`` on; warnings and
        errors always (the shim prints them only with ``debug`` on)."""
        if self.config.debug or level in ("warn", "error"):
            self._out.append(c.Log(level, message))

    def _error(self, code: str, message: str) -> None:
        self._out.append(c.Log("error", message))
        self._out.append(c.Emit("error", {"code": code, "message": message}))


def _items(count: int, kind: str) -> str:
    noun = "event" if kind == "events" else "mutation"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _lane_name(record: Record) -> str:
    return f"m:{record.stream or DEFAULT_MUTATION_STREAM}"


def _counts(value: Any) -> list[tuple[str, int]]:
    """A {reason: count} the shim reported, keeping only sane entries."""
    if not isinstance(value, dict):
        return []
    return [(str(k)[:40], v) for k, v in value.items()
            if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**53]


def _short(value: Any, default: str) -> str:
    """A code from outside (an error name, a server code), bounded."""
    return value[:64] if isinstance(value, str) and value else default


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1000 else None


def _unit(value: Any) -> float:
    """Jitter in [0, 1]; anything else (NaN, a string) counts as 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return min(max(float(value), 0.0), 1.0)
    return 0.0


def _parse_reply(reply: Any) -> Any:
    """A server reply: the text the shim read (parsed here, bounded) or a
    value already parsed. An unreadable reply is no reply (a 2xx still acks)."""
    if isinstance(reply, str):
        if not reply:
            return None
        try:
            return parse_json(reply, MAX_REPLY_DEPTH, MAX_REPLY_BYTES)
        except CorruptRecord:
            return None
    return reply


def _rejected_codes(reply: Any, batch_ids: tuple[str, ...]) -> dict[str, str]:
    """Events the server refused one by one in a 2xx reply."""
    if not isinstance(reply, dict) or not isinstance(reply.get("rejected"), list):
        return {}
    in_batch = set(batch_ids)
    codes: dict[str, str] = {}
    for item in reply["rejected"]:
        if not isinstance(item, dict):
            continue
        event_id = item.get("event_id")
        if isinstance(event_id, str) and event_id in in_batch:
            codes[event_id] = _short(item.get("code"), "rejected")
    return codes
