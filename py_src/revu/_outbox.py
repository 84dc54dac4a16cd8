"""The outbox: ``Outbox.handle(fact) -> list[Command]``. See ``_state.py``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from . import _commands as c
from . import _facts as f
from ._config import KEEPALIVE_BUDGET_BYTES, Config, check_consent, consent_allows
from ._errors import UsageError
from ._policy import (
    backoff_delay_ms, eviction_order, is_transient, parse_retry_after_ms, send_order, take_batch,
)
from ._records import CorruptRecord, DeadLetter, Record, decode_dead_letter, decode_record, record_json
from ._state import State, Trigger, transition

RETRY_TIMER = "retry"
FLUSH_TIMER = "flush"
EVENTS = "events"
DEFAULT_MUTATION_STREAM = "default"


@dataclass(frozen=True)
class _Batch:
    batch_id: str
    event_ids: tuple[str, ...]
    kind: str


@dataclass
class _Lane:
    """One delivery pipe: the events lane, or one mutation stream.

    Each lane has at most one request in flight and its own backoff, so a
    failing mutation stream blocks only itself.
    """

    name: str
    state: State = State.IDLE
    in_flight: _Batch | None = None
    failures: int = 0
    backoff_ms: int = 0
    retry_at_ms: int | None = None

    @property
    def timer(self) -> str:
        return RETRY_TIMER if self.name == EVENTS else f"{RETRY_TIMER}:{self.name}"


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
    """The delivery state machine for one tab.

    Args:
        config: checked configuration (``Config.from_options``).

    Feed it facts with ``handle``; the first fact must be ``Restored``.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._events = _Lane(EVENTS, State.STARTING)
        self._lanes: dict[str, _Lane] = {EVENTS: self._events}
        self._queue: dict[str, Record] = {}  # seq order
        self._queued_bytes = 0
        self._index = _Index()
        self._dead: dict[str, DeadLetter] = {}
        self._attempts: Counter[str] = Counter()  # requests that carried the item
        self._answered_failures: Counter[str] = Counter()  # of those, failed with an HTTP status
        self._timers: dict[str, int] = {}
        self._online = True
        self._durable = True
        self._storage = "unknown"
        self._consent: Any = config.consent
        self._draining = False
        self._waiters: dict[str, _Waiter] = {}
        self._suspects: set[str] = set()
        self._probe_limit: int | None = None
        self._batch_seq = 0
        self._next_expiry_ms: int | None = None
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
            f.ConsentChanged: self._on_consent_changed,
            f.DeadLetterRetried: self._on_dead_letter_retried,
            f.DeadLetterDropped: self._on_dead_letter_dropped,
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
        for fact in facts:
            self._handlers[type(fact)](fact)
        self._report()
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
                for lane in self._lanes.values() if lane.name != EVENTS
            },
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
        self._set_consent(fact.consent)
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
        for reason, count in fact.dropped_before_start.items():
            self._dropped[str(reason)] += int(count)
        self._events.state = transition(self._events.state, Trigger.RESTORED)
        self._out.append(c.PublishRules(self.config.rules()))
        for record in sorted(records, key=lambda r: r.seq):
            self._admit(record)
        self._purge_disallowed()
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
            event_id = _event_id_of(fact.record)
            if event_id is not None:
                self._out.append(c.Delete((event_id,), reason="invalid"))
            return
        if self._admit(record):
            if not fact.durable:  # only a queued record says anything about storage
                self._durable = False
            self._enforce_caps()
        self._pump(fact.now_ms)

    def _on_flush_requested(self, fact: f.FlushRequested) -> None:
        pending = set(self._queue)
        if not pending:
            self._out.append(c.SettleFlush(fact.flush_id, True))
            return
        self._waiters[fact.flush_id] = _Waiter(pending)
        self._draining = True
        for lane in self._lanes.values():
            if lane.state is State.BACKING_OFF:
                self._cancel_retry(lane)
                lane.state = transition(lane.state, Trigger.MANUAL_FLUSH)
        self._pump(fact.now_ms, force=True)

    def _on_send_succeeded(self, fact: f.SendSucceeded) -> None:
        found = self._take_in_flight(fact.batch_id)
        if found is None:
            return
        lane, batch = found
        live = [i for i in batch.event_ids if i in self._queue]
        if batch.kind == "mutation" and isinstance(fact.reply, dict) and fact.reply.get("ok") is False:
            # The ack contract: {"ok": false, "code"} refuses the write for good.
            lane.state = transition(lane.state, Trigger.PERMANENT_FAILURE)
            reason = f"refused:{fact.reply.get('code', 'refused')}"
            self._last_error = reason
            self._dead_letter([self._queue[i] for i in live], {}, fact.status, fact.now_ms, reason=reason)
            self._pump(fact.now_ms)
            return
        rejected = _rejected_codes(fact.reply, batch.event_ids) if batch.kind == "events" else {}
        if rejected:
            self._dead_letter([self._queue[i] for i in live if i in rejected], rejected, fact.status, fact.now_ms)
        acked = [i for i in live if i not in rejected]
        self._remove(acked)
        if acked:
            self._out.append(c.Delete(tuple(acked), reason="acked"))
        self._counts["acked"] += len(acked)
        self._forget(acked, acked=True)
        lane.failures = 0
        lane.backoff_ms = 0
        lane.state = transition(lane.state, Trigger.ACK)
        if not self._queue:
            self._draining = False
            self._out.append(c.Emit("outbox:flushed", {"acked": self._counts["acked"]}))
        self._pump(fact.now_ms)

    def _on_send_failed(self, fact: f.SendFailed) -> None:
        found = self._take_in_flight(fact.batch_id)
        if found is None:
            return
        lane, batch = found
        reason = f"http_{fact.status}" if fact.status is not None else (fact.error or "network_error")
        self._last_error = reason
        live = [i for i in batch.event_ids if i in self._queue]
        # maxAttempts counts failures the server answered: an outage of the
        # network must never use up an event's attempts.
        if fact.status is not None:
            self._answered_failures.update(live)
        limit = self.config.max_attempts
        out_of_attempts = bool(limit) and any(self._answered_failures[i] >= limit for i in live)
        if is_transient(fact.status) and not out_of_attempts:
            lane.failures += 1
            delay = backoff_delay_ms(lane.failures, fact.jitter,
                                     self.config.backoff_base_ms, self.config.backoff_max_ms)
            retry_after = parse_retry_after_ms(fact.retry_after, fact.now_ms)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.config.max_retry_after_ms))
            lane.backoff_ms = delay
            lane.retry_at_ms = fact.now_ms + delay
            self._set_timer(lane.timer, lane.retry_at_ms)
            lane.state = transition(lane.state, Trigger.TRANSIENT_FAILURE)
            self._log("warn", f"{lane.name}: send {batch.batch_id} failed ({reason}); "
                              f"retry #{lane.failures} in {delay} ms")
            for waiter_id, waiter in list(self._waiters.items()):
                if not waiter.final:
                    self._settle(waiter_id, False)
            return
        if out_of_attempts:
            reason = f"max_attempts:{reason}"
        lane.state = transition(lane.state, Trigger.PERMANENT_FAILURE)
        if batch.kind == "mutation" or len(batch.event_ids) == 1:
            self._dead_letter([self._queue[i] for i in live], {}, fact.status, fact.now_ms, reason=reason)
            if self._suspects:
                # The poison is out: try the other suspects together again (and
                # bisect again only if another poison is among them).
                self._probe_limit = len(self._suspects)
        elif live:
            # (Sent with several events: even if one survives here, the refusal
            # may have been a batch-mate's that consent purged meanwhile.)
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
        if fact.key == FLUSH_TIMER:
            self._draining = bool(self._queue)
        for lane in self._lanes.values():
            if fact.key == lane.timer and lane.state is State.BACKING_OFF:
                lane.state = transition(lane.state, Trigger.RETRY_DUE)
                self._draining = True
        self._pump(fact.now_ms)

    def _on_online(self, fact: f.WentOnline) -> None:
        self._online = True
        for lane in self._lanes.values():
            lane.failures = 0
            lane.backoff_ms = 0
            if lane.state is State.BACKING_OFF:
                self._cancel_retry(lane)
                lane.state = transition(lane.state, Trigger.ONLINE)
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

    def _on_consent_changed(self, fact: f.ConsentChanged) -> None:
        self._set_consent(fact.consent)
        self._purge_disallowed()
        self._pump(fact.now_ms)

    def _on_dead_letter_retried(self, fact: f.DeadLetterRetried) -> None:
        letter = self._dead.get(fact.event_id)
        if letter is None or not consent_allows(self._consent, letter.record.category):
            why = "is not a dead letter" if letter is None else "is not allowed by the current consent"
            self._error("unknown_entry", f"retry: {fact.event_id!r} {why}")
            self._out.append(c.SettleFlush(fact.flush_id, False))
            return
        del self._dead[fact.event_id]
        self._insert(letter.record)
        self._out.append(c.Requeue((record_json(letter.record),)))
        self._waiters[fact.flush_id] = _Waiter({fact.event_id}, final=True)
        self._draining = True
        self._enforce_caps()
        self._pump(fact.now_ms)

    def _on_dead_letter_dropped(self, fact: f.DeadLetterDropped) -> None:
        if fact.event_id not in self._dead:
            self._error("unknown_entry", f"drop: {fact.event_id!r} is not a dead letter")
            return
        del self._dead[fact.event_id]
        self._dropped["by_page"] += 1
        self._out.append(c.DeleteDeadLetters((fact.event_id,)))

    # -- admission -----------------------------------------------------------

    def _admit(self, record: Record) -> bool:
        """Queue a new record unless a rule says otherwise (each rule counted)."""
        if record.event_id in self._queue or record.event_id in self._dead:
            return False  # the same fact twice: nothing new
        if not consent_allows(self._consent, record.category):
            self._reject(record, "consent")
            return False
        for pair in record.keys.items():
            if pair in self._index.keys:
                self._reject(record, "duplicate")
                return False
        rule = self._coalesce_rule(record)
        if rule and "windowMs" in rule:
            previous = self._queue.get(self._index.latest.get((record.event, record.stream), ""))
            if (previous is not None and previous.event_id not in self._in_flight_ids()
                    and record.created_at - previous.created_at <= rule["windowMs"]):
                self._remove([previous.event_id])
                self._dropped["coalesced"] += 1
                self._out.append(c.Delete((previous.event_id,), reason="coalesced"))
                self._forget([previous.event_id], acked=False)
        self._insert(record)
        return True

    def _reject(self, record: Record, reason: str) -> None:
        self._dropped[reason] += 1
        self._out.append(c.Delete((record.event_id,), reason=reason))
        self._log("info", f"{record.event!r} {record.event_id} not queued: {reason}")

    def _insert(self, record: Record) -> None:
        last = next(reversed(self._queue.values()), None)
        self._queue[record.event_id] = record
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

    def _remove(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            record = self._queue.pop(event_id, None)
            if record is None:
                continue
            self._queued_bytes -= record.size_bytes
            for pair in record.keys.items():
                if self._index.keys.get(pair) == event_id:
                    del self._index.keys[pair]
            latest_key = (record.event, record.stream)
            if self._index.latest.get(latest_key) == event_id:
                del self._index.latest[latest_key]

    def _coalesce_rule(self, record: Record) -> dict[str, int] | None:
        return None if record.mutation is not None else self.config.coalesce_rule(record.event)

    def _deadline(self, record: Record) -> int:
        """When the record expires: ``ttl_ms`` (per event or coalescing rule), else ``maxAgeMs``."""
        deadline = record.created_at + self.config.max_age_ms
        ttl = record.meta.get("ttl_ms") or (self._coalesce_rule(record) or {}).get("ttlMs")
        return min(deadline, record.created_at + ttl) if ttl else deadline

    # -- sending -------------------------------------------------------------

    def _pump(self, now_ms: int, force: bool = False) -> None:
        """Send what the triggers call for, on every lane whose pipe is free."""
        self._expire(now_ms)
        if self._queue and FLUSH_TIMER not in self._timers:
            self._set_timer(FLUSH_TIMER, now_ms + self.config.flush_interval_ms)
        if not (self._online or force):
            return
        events: list[Record] = []
        mutations: dict[str, Record] = {}  # lane -> its head
        for record in self._queue.values():
            if record.mutation is None:
                events.append(record)
            else:
                mutations.setdefault(_lane_name(record), record)
        if self._events.state is State.IDLE and events:  # idle: none of them is in flight
            if len(events) >= self.config.flush_at:
                self._draining = True
            if self._draining:
                self._send_events(events, now_ms)
        for name, head in mutations.items():
            lane = self._lanes.setdefault(name, _Lane(name))
            if lane.state is State.IDLE:
                self._send_mutation(lane, head)
        for name in [n for n, lane in self._lanes.items()
                     if n != EVENTS and n not in mutations and lane.state is State.IDLE]:
            del self._lanes[name]  # an idle, empty stream: forget it

    def _send_events(self, records: list[Record], now_ms: int) -> None:
        """One batch: by priority and stream order, within count and bytes."""
        cfg = self.config
        limit = cfg.max_batch if self._probe_limit is None else min(cfg.max_batch, self._probe_limit)
        batch = take_batch(send_order(records), limit, cfg.max_batch_bytes, len(cfg.api_key.encode()))
        body = json.dumps(
            {"api_key": cfg.api_key, "batch": [{**r.envelope, "sent_at": now_ms} for r in batch]},
            separators=(",", ":"), ensure_ascii=False,
        )
        self._start(self._events, tuple(r.event_id for r in batch), c.Send(
            batch_id="", url=cfg.endpoint, body=body, event_ids=(),
            keepalive=len(body.encode("utf-8")) <= KEEPALIVE_BUDGET_BYTES,
            timeout_ms=cfg.request_timeout_ms,
        ))

    def _send_mutation(self, lane: _Lane, record: Record) -> None:
        m = record.mutation
        assert m is not None
        headers = {} if isinstance(m.body, str) or m.body is None else {"Content-Type": "application/json"}
        headers.update(m.headers)
        headers["Idempotency-Key"] = m.idempotency_key
        body = m.body if isinstance(m.body, str) else ("" if m.body is None else
                                                          json.dumps(m.body, separators=(",", ":"), ensure_ascii=False))
        self._start(lane, (record.event_id,), c.Send(
            batch_id="", url=m.url, body=body, event_ids=(), method=m.method, headers=headers,
            keepalive=len(body.encode("utf-8")) <= KEEPALIVE_BUDGET_BYTES,
            timeout_ms=self.config.request_timeout_ms, kind="mutation",
        ))

    def _start(self, lane: _Lane, ids: tuple[str, ...], send: c.Send) -> None:
        if any(self._attempts[i] for i in ids):
            self._counts["retried"] += 1
        self._attempts.update(ids)
        self._batch_seq += 1
        batch_id = f"b{self._batch_seq}"
        lane.in_flight = _Batch(batch_id, ids, send.kind)
        lane.state = transition(lane.state, Trigger.SEND)
        self._counts["requests"] += 1
        self._out.append(replace(send, batch_id=batch_id, event_ids=ids))

    def _take_in_flight(self, batch_id: str) -> tuple[_Lane, _Batch] | None:
        for lane in self._lanes.values():
            if lane.in_flight is not None and lane.in_flight.batch_id == batch_id:
                batch, lane.in_flight = lane.in_flight, None
                return lane, batch
        self._log("debug", f"ignored outcome of unknown batch {batch_id!r}")
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
        for record in order:
            if len(self._queue) > cfg.max_queue:
                reason = "overflow"
            elif self._queued_bytes > cfg.max_queue_bytes:
                reason = "overflow_bytes"
            else:
                break
            self._remove([record.event_id])
            victims[reason].append(record.event_id)
        for reason, ids in victims.items():
            if ids:
                self._dropped[reason] += len(ids)
                self._out.append(c.Delete(tuple(ids), reason=reason))
                self._forget(ids, acked=False)
                self._log("warn", f"queue over its cap ({reason}): dropped {len(ids)} events")

    def _expire(self, now_ms: int) -> None:
        """Drop queued events past their TTL or ``maxAgeMs`` (counted)."""
        if self._next_expiry_ms is None or now_ms < self._next_expiry_ms:
            return
        in_flight = self._in_flight_ids()
        gone: dict[str, list[str]] = {"expired": [], "max_age": []}
        next_expiry: int | None = None
        for record in list(self._queue.values()):
            deadline = self._deadline(record)
            if now_ms >= deadline and record.event_id not in in_flight:
                aged = now_ms - record.created_at >= self.config.max_age_ms
                gone["max_age" if aged else "expired"].append(record.event_id)
            elif next_expiry is None or deadline < next_expiry:
                next_expiry = deadline
        self._next_expiry_ms = next_expiry
        for reason, ids in gone.items():
            if ids:
                self._remove(ids)
                self._dropped[reason] += len(ids)
                self._out.append(c.Delete(tuple(ids), reason=reason))
                self._forget(ids, acked=False)

    def _purge_disallowed(self) -> None:
        """What consent no longer allows leaves the queue and the dead letters.

        In-flight items too: the shim has already purged them from storage, and
        a request on the wire cannot be recalled; its outcome is then ignored.
        """
        ids = [r.event_id for r in self._queue.values() if not consent_allows(self._consent, r.category)]
        if ids:
            self._remove(ids)
            self._dropped["consent"] += len(ids)
            self._out.append(c.Delete(tuple(ids), reason="consent"))
            self._forget(ids, acked=False)
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

    def _drop_corrupt(self, storage_id: str, exc: Exception, queued: bool) -> None:
        self._dropped["corrupt"] += 1
        self._out.append(c.Delete((storage_id,), reason="corrupt") if queued
                         else c.DeleteDeadLetters((storage_id,)))
        self._error("corrupt_record", f"stored record {storage_id!r} is unreadable and was removed: {exc}")

    def _forget(self, event_ids: list[str], acked: bool) -> None:
        """Bookkeeping after items left the queue (acked, or by a rule)."""
        for event_id in event_ids:
            self._attempts.pop(event_id, None)
            self._answered_failures.pop(event_id, None)
            self._suspects.discard(event_id)
        if not self._suspects:
            self._probe_limit = None
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
        try:
            check_consent(state)
        except UsageError as exc:
            self._error("invalid_consent", f"{exc}; consent stays {self._consent!r}")
            return
        self._consent = state

    # -- timers, reports -----------------------------------------------------

    def _set_timer(self, key: str, at_ms: int) -> None:
        self._timers[key] = at_ms
        self._out.append(c.SetTimer(key, at_ms))

    def _cancel_retry(self, lane: _Lane) -> None:
        if self._timers.pop(lane.timer, None) is not None:
            self._out.append(c.CancelTimer(lane.timer))
        lane.retry_at_ms = None

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


def _event_id_of(value: Any) -> str | None:
    """The event_id of a value that did not decode, if one can be read, so
    that its stored copy can still be deleted."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    env = value.get("env") if isinstance(value, dict) else None
    event_id = env.get("event_id") if isinstance(env, dict) else None
    return event_id if isinstance(event_id, str) else None


def _lane_name(record: Record) -> str:
    return f"m:{record.stream or DEFAULT_MUTATION_STREAM}"


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
