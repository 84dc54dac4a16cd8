"""FakeBrowser: plays the core's commands back as facts, like the shim does,
with an in-memory store, a manual clock and a scriptable network + server.

Crash/reload scenarios are plain loops: ``browser.reload()`` drops everything
not in the store and boots a new Outbox from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from revu import Config, Outbox
from revu._config import consent_allows
from revu import _commands as c
from revu import _facts as f

T0 = 1_700_000_000_000


@dataclass
class FakeServer:
    """Reference-server semantics: dedupe on event_id, count duplicates."""

    poison: set[str] = field(default_factory=set)  # event names answered 422 (whole batch)
    reject: set[str] = field(default_factory=set)  # event names rejected one by one in a 2xx
    arrivals: list[str] = field(default_factory=list)  # event ids, first receipt order
    envelopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    mutations: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> applied body
    applied: list[str] = field(default_factory=list)  # idempotency keys, in apply order
    replays: int = 0
    refuse: set[str] = field(default_factory=set)  # mutation texts answered {"ok": false}

    def mutate(self, send: Any) -> tuple[int, Any]:
        key = send.headers["Idempotency-Key"]
        body = json.loads(send.body) if send.body else None
        if isinstance(body, dict) and body.get("text") in self.refuse:
            return 200, {"ok": False, "code": "refused_by_test"}
        if key in self.mutations:
            self.replays += 1
        else:
            self.mutations[key] = {"url": send.url, "body": body}
            self.applied.append(key)
        return 200, {"ok": True, "emitId": key}

    def receive(self, body: str) -> tuple[int, Any]:
        data = json.loads(body)
        assert set(data) == {"api_key", "batch"}
        self.requests.append(data)
        batch = data["batch"]
        if any(env["event"] in self.poison for env in batch):
            return 422, {"ok": False, "code": "poison"}
        rejected = []
        for env in batch:
            if env["event"] in self.reject:
                rejected.append({"event_id": env["event_id"], "code": "bad_event"})
                continue
            if env["event_id"] in self.envelopes:
                self.duplicates += 1
                continue
            self.envelopes[env["event_id"]] = env
            self.arrivals.append(env["event_id"])
        return 200, {"ok": True, "rejected": rejected}


class FakeBrowser:
    """The shim, simulated. Sends wait in ``in_flight`` until the test resolves them."""

    def __init__(self, server: FakeServer | None = None, durable: bool = True, **options: Any) -> None:
        self.options = {"apiKey": "test-key", "host": "https://ingest.test", **options}
        self.config = Config.from_options(self.options)
        self.server = server or FakeServer()
        self.durable = durable
        self.now = T0
        self.store: dict[str, str] = {}
        self.dead_store: dict[str, str] = {}
        self.memory: dict[str, str] = {}  # records of a non-durable page
        self.rules: dict[str, Any] | None = None
        self.consent_state: Any = self.config.consent
        self.seq = 0
        self.next_id = 0
        self.recorded: list[tuple[str, str | None]] = []  # (event_id, stream), record order
        self.names: dict[str, str] = {}
        self.dropped: dict[str, str] = {}  # event_id -> reason, deleted without ack
        self.dead_ids: set[str] = set()
        self.held: set[str] = set()
        self.quarantine: dict[str, tuple[str, str]] = {}  # storage id -> (reason, raw)
        self.halted: str | None = None
        self.history: list[c.Command] = []
        self.boots = 0
        self.boot()

    # -- lifecycle -----------------------------------------------------------

    def boot(self) -> list[c.Command]:
        self.outbox = Outbox(self.config)
        self.in_flight: dict[str, c.Send] = {}
        self.timers: dict[str, int] = {}
        self.flushes: dict[str, bool | None] = {}
        self.emitted: list[c.Emit] = []
        self.status: dict[str, Any] = {}
        self.boots += 1
        self.memory = {}
        return self.feed(f.Restored(
            now_ms=self.now,
            records=tuple({"id": k, "raw": v} for k, v in self.store.items()),
            dead_letters=tuple({"id": k, "raw": v} for k, v in self.dead_store.items()),
            durable=self.durable,
            consent=self.consent_state,
        ))

    def reload(self, requests_arrive: bool = False) -> list[c.Command]:
        """The page goes away mid-whatever and a new one loads from storage.

        In-flight requests either reach the server (their reply is lost) or not.
        """
        if requests_arrive:
            for send in self.in_flight.values():
                if send.kind == "mutation":
                    self.server.mutate(send)
                else:
                    self.server.receive(send.body)
        return self.boot()

    # -- the page ------------------------------------------------------------

    def record(self, event: str = "click", stream: str | None = None, priority: str | None = None,
               keys: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
               mutation: dict[str, Any] | None = None, **props: Any) -> str:
        """What capture.js does: store, then tell the core. Consent is checked
        first, as capture does (a disallowed event is never stored)."""
        self.next_id += 1
        event_id = f"ev-{self.next_id:05d}"
        self.seq = max(self.now * 1000, self.seq + 1)
        env: dict[str, Any] = {"event_id": event_id, "event": event, "properties": props, "created_at": self.now}
        if stream is not None:
            env["stream"] = stream
        if priority is not None:
            env["priority"] = priority
        if keys is not None:
            env["keys"] = keys
        record: dict[str, Any] = {"v": 1, "seq": self.seq, "env": env}
        if meta:
            record["meta"] = meta
        if mutation is not None:
            record["mutation"] = mutation
        self.recorded.append((event_id, stream))
        self.names[event_id] = event
        category = "necessary" if mutation is not None else (meta or {}).get("category", "analytics")
        if self.consent_state == "unknown" and not consent_allows("unknown", category):
            # Held in memory until the page sets a consent state.
            self.memory[event_id] = json.dumps(record)
            self.held.add(event_id)
            self.feed(f.Recorded(now_ms=self.now, record=record, durable=False, held=True))
            return event_id
        if not consent_allows(self.consent_state, category):
            self.dropped[event_id] = "consent"
            return event_id
        (self.store if self.durable else self.memory)[event_id] = json.dumps(record)
        self.feed(f.Recorded(now_ms=self.now, record=record, durable=self.durable))
        return event_id

    def retry(self, event_id: str) -> str:
        """revu.outbox.retry(id): requeue a dead letter; settles like a flush."""
        flush_id = f"r{len(self.flushes) + 1}"
        self.flushes[flush_id] = None
        self.feed(f.DeadLetterRetried(now_ms=self.now, event_id=event_id, flush_id=flush_id))
        return flush_id

    def enqueue(self, text: str, stream: str | None = "chat", key: str | None = None) -> str:
        """revu.outbox.enqueue: a chat message as a mutation."""
        mutation = {"method": "POST", "url": f"https://app.test/chat/{stream}", "body": {"text": text},
                    "headers": {}, "idempotency_key": key or f"idem-{self.next_id + 1}"}
        return self.record("$mutation", stream=stream, mutation=mutation)

    def consent(self, state: Any) -> list[c.Command]:
        """What revu.consent() does: purge storage at once, then tell the core."""
        self.consent_state = state
        for store in (self.store, self.memory):
            for event_id, raw in list(store.items()):
                value = json.loads(raw)
                category = "necessary" if "mutation" in value else value.get("meta", {}).get("category", "analytics")
                if not consent_allows(state, category):
                    del store[event_id]
                    self.held.discard(event_id)
        for event_id in list(self.held):  # now allowed: held records are stored
            if self.durable and event_id in self.memory:
                self.store[event_id] = self.memory.pop(event_id)
            self.held.discard(event_id)
        return self.feed(f.ConsentChanged(now_ms=self.now, consent=state))

    def flush(self) -> str:
        flush_id = f"f{len(self.flushes) + 1}"
        self.flushes[flush_id] = None
        self.feed(f.FlushRequested(now_ms=self.now, flush_id=flush_id))
        return flush_id

    # -- the network ---------------------------------------------------------

    def deliver(self, outcome: str = "ok", status: int = 503, retry_after: str | None = None,
                jitter: float = 0.0, kind: str | None = None) -> list[c.Command]:
        """Resolve the oldest in-flight send (of ``kind`` "events"/"mutation" if given).

        outcome: "ok" (server answers), "ack_loss" (server stores, reply lost),
        "network" (never arrives), "status" (server answers ``status`` without storing).
        """
        batch_id, send = next(iter(self.in_flight.items())) if kind is None else next(
            (b, s) for b, s in self.in_flight.items() if s.kind == kind)
        del self.in_flight[batch_id]
        receive = self.server.mutate if send.kind == "mutation" else (lambda s: self.server.receive(s.body))
        if outcome == "ok":
            code, reply = receive(send)
            if 200 <= code < 300:
                return self.feed(f.SendSucceeded(now_ms=self.now, batch_id=batch_id, status=code, reply=reply))
            return self.feed(f.SendFailed(now_ms=self.now, batch_id=batch_id, status=code, jitter=jitter))
        if outcome == "ack_loss":
            receive(send)
            return self.feed(f.SendFailed(now_ms=self.now, batch_id=batch_id, error="network_error", jitter=jitter))
        if outcome == "network":
            return self.feed(f.SendFailed(now_ms=self.now, batch_id=batch_id, error="network_error", jitter=jitter))
        if outcome == "status":
            return self.feed(f.SendFailed(now_ms=self.now, batch_id=batch_id, status=status,
                                          retry_after=retry_after, jitter=jitter))
        raise ValueError(outcome)

    def advance(self, ms: int) -> None:
        """Move the clock, firing due timers in deadline order."""
        end = self.now + ms
        while True:
            due = sorted((at, key) for key, at in self.timers.items() if at <= end)
            if not due:
                break
            at, key = due[0]
            self.now = max(self.now, at)
            del self.timers[key]
            self.feed(f.TimerFired(now_ms=self.now, key=key))
        self.now = end

    def settle(self, max_steps: int = 10_000) -> None:
        """Healthy network: deliver and advance until nothing is queued or pending."""
        for _ in range(max_steps):
            if self.in_flight:
                self.deliver("ok")
            elif self.outbox.queued_ids:
                self.advance(max(1, min(self.timers.values(), default=self.now + 1) - self.now))
            else:
                return
        raise AssertionError("did not settle")

    # -- plumbing ------------------------------------------------------------

    def feed(self, fact: f.Fact) -> list[c.Command]:
        commands = self.outbox.handle(fact)
        self.history.extend(commands)
        for command in commands:
            self.run(command)
        return commands

    def run(self, cmd: c.Command) -> None:
        if isinstance(cmd, c.Send):
            assert cmd.batch_id not in self.in_flight
            self.in_flight[cmd.batch_id] = cmd
        elif isinstance(cmd, c.Delete):
            for event_id in cmd.event_ids:
                self.store.pop(event_id, None)
                self.memory.pop(event_id, None)
                if cmd.reason != "acked":
                    self.dropped[event_id] = cmd.reason
        elif isinstance(cmd, c.StoreDeadLetters):
            for entry in cmd.entries:
                event_id = entry["env"]["event_id"]
                self.store.pop(event_id, None)
                self.memory.pop(event_id, None)
                if self.durable:
                    self.dead_store[event_id] = json.dumps(entry)
                self.dead_ids.add(event_id)
        elif isinstance(cmd, c.Requeue):
            for value in cmd.records:
                event_id = value["env"]["event_id"]
                self.dead_store.pop(event_id, None)
                self.dead_ids.discard(event_id)
                (self.store if self.durable else self.memory)[event_id] = json.dumps(value)
        elif isinstance(cmd, c.DeleteDeadLetters):
            for event_id in cmd.event_ids:
                self.dead_store.pop(event_id, None)
        elif isinstance(cmd, c.SetTimer):
            self.timers[cmd.key] = cmd.at_ms
        elif isinstance(cmd, c.CancelTimer):
            self.timers.pop(cmd.key, None)
        elif isinstance(cmd, c.SettleFlush):
            assert self.flushes.get(cmd.flush_id, "missing") is None, "flush settled twice"
            self.flushes[cmd.flush_id] = cmd.ok
        elif isinstance(cmd, c.Emit):
            self.emitted.append(cmd)
        elif isinstance(cmd, c.ReportStatus):
            self.status = cmd.status
        elif isinstance(cmd, c.PublishRules):
            self.rules = cmd.rules
        elif isinstance(cmd, c.Quarantine):
            for entry in cmd.entries:
                area = self.store if entry["area"] == "queue" else self.dead_store
                raw = area.pop(entry["id"], None)
                self.memory.pop(entry["id"], None)
                self.quarantine[entry["id"]] = (entry["reason"], raw or "")
        elif isinstance(cmd, c.Halt):
            self.halted = cmd.reason
        elif isinstance(cmd, c.Log):
            pass
        else:
            raise AssertionError(f"unknown command {cmd!r}")

    def sent_batches(self) -> list[list[str]]:
        return [list(cmd.event_ids) for cmd in self.history if isinstance(cmd, c.Send)]


def record_value(event_id: str, seq: int, event: str = "click", meta: dict[str, Any] | None = None,
                 created_at: int = T0, **extra: Any) -> dict[str, Any]:
    env = {"event_id": event_id, "event": event, "properties": {}, "created_at": created_at, **extra}
    value: dict[str, Any] = {"v": 1, "seq": seq, "env": env}
    if meta:
        value["meta"] = meta
    return value
