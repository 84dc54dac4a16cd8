"""The test fault layer: fault switches, a request log and ``/__control/``.

Never part of the product by default: ``revu-ingest serve`` builds the app
without it; ``revu-ingest serve --test-faults`` and the in-process harness
(``demo/ingest_server.py``, used by the tests and the demo) add it. It wraps
the service (``create_app(wrap_inner=..., wrap_outer=...)``) and changes
nothing inside it: it reads the request body first (to log it and to decide
on a fault), then either answers by itself, drops the connection, or hands the
same body to the service and forwards, rewrites or swallows its reply.

Switches (``POST /__control/faults``; docs/ingest.md "Test fault layer"):

    script          steps consumed one per event request: status, retry_after,
                    delay_ms, store, drop_reply, reject_ids
    offline         close every event request's connection with no reply
    poison_events   event names; a batch holding one gets 422
    delay_ms        default delay before answering an event request
    keep_alive      false: every reply says Connection: close
    mutation_script, mutation_offline, mutation_delay_ms
                    the same for POST /v1/chat/<room>/messages

Order for an event request: offline (drop, no step consumed); take the next
step and sleep its delay; drop_reply (process per ``store``, then close with
no reply); a non-2xx step (reply ``fault_<status>``, storing only with
``store: true``); else normal processing (400, 422 poison, ``reject_ids``,
and the 2xx status of the step).

Everything here is per process (the request log, the switches and
``envelopes_seen``); events, messages, keys and request numbers are in the
database.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable, Mapping

from starlette.responses import Response

from . import _wire as wire
from ._app import ClientGone, error_response, json_response, now_ms, read_body, request_info
from ._config import Settings
from ._cors import ASGIApp, Receive, Scope, Send, header
from .storage import Storage, StorageError

__all__ = ["FaultLayer"]

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


# --------------------------------------------------------------------------
# Fault config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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



def _headers_get(scope: Scope, name: bytes) -> str | None:
    value = header(scope, name)
    return value.decode("latin-1") if value is not None else None


class _Captured:
    """The service's reply, held back by the fault layer."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.rewritten: bytes | None = None  # the reply body, when the fault layer edited it

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def json(self) -> Any:
        try:
            return json.loads(bytes(self.body))
        except ValueError:
            return None

    async def replay(self, send: Send, status: int | None = None, body: bytes | None = None) -> None:
        headers = self.headers
        if body is not None:
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status or self.status, "headers": headers})
        await send({"type": "http.response.body", "body": bytes(self.body) if body is None else body})


def _replay_receive(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # blocks until the client goes away

    return replay


async def _drop_connection(scope: Scope) -> None:
    """Close the TCP connection without writing one byte of reply.

    ASGI has no verb for this; uvicorn's per-request ``send`` is a bound
    method of an object that holds the transport. The outer hook saved it.
    """
    raw_send = scope.get("revu.raw_send")
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("the fault layer can drop connections only under uvicorn")
    transport.close()
    # uvicorn would otherwise answer 500 for an app that returned without
    # replying, before connection_lost() runs.
    cycle.disconnected = True


class FaultLayer:
    """Fault switches and the request log around one service app.

    Thread-safe: the harness reads and changes it from the test thread while
    the server's event loop runs the requests.
    """

    def __init__(self, settings: Settings, storage: Storage, on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.on_change = on_change or (lambda: None)
        self._lock = threading.Lock()
        self._faults = _default_faults()
        self._requests: list[dict[str, Any]] = []
        self._envelopes_seen = 0
        self._app: ASGIApp | None = None

    # -- hooks for create_app ---------------------------------------------

    def inner(self, app: ASGIApp) -> ASGIApp:
        self._app = app
        return self

    def outer(self, app: ASGIApp) -> ASGIApp:
        async def keep_alive_switch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            scope["revu.raw_send"] = send

            async def maybe_close(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    with self._lock:
                        keep_alive = self._faults["keep_alive"]
                    if not keep_alive:
                        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                        message = dict(message, headers=headers + [(b"connection", b"close")])
                await send(message)

            await app(scope, receive, maybe_close)

        return keep_alive_switch

    # -- thread-safe accessors --------------------------------------------

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return _copy_faults(self._faults)

    def set_faults(self, update: Mapping[str, Any]) -> dict[str, Any]:
        normalized = _normalize_fault_update(update)
        with self._lock:
            self._faults.update(normalized)
            result = _copy_faults(self._faults)
        self.on_change()
        return result

    async def state(self, tail: int | None = None) -> dict[str, Any]:
        totals = await self.storage.totals()
        events = await self.storage.events(tail)
        messages = await self.storage.messages(tail)
        with self._lock:
            requests = self._requests if tail is None else self._requests[-tail:] if tail else []
            requests = [dict(r, event_ids=list(r["event_ids"]), body_keys=list(r["body_keys"])) for r in requests]
            requests_total = len(self._requests)
            envelopes_seen = self._envelopes_seen
            faults = _copy_faults(self._faults)
        return {
            "events": [_event_view(e) for e in events],
            "unique": totals.unique,
            "duplicates": totals.duplicates,
            "received_total": totals.received_total,
            "envelopes_seen": envelopes_seen,
            "requests_total": requests_total,
            "requests": requests,
            "faults": faults,
            "messages": messages,
            "mutation_replays": totals.mutation_replays,
        }

    async def reset(self) -> None:
        await self.storage.reset()
        with self._lock:
            self._faults = _default_faults()
            self._requests = []
            self._envelopes_seen = 0
        self.on_change()

    # -- the request log --------------------------------------------------

    async def _begin(self, kind: str, scope: Scope, at_ms: int, wire_body: bytes, decoded: bytes | None,
                     parsed: Any, **extra: Any) -> dict[str, Any]:
        try:
            seq: int | None = await self.storage.next_request_seq()
        except StorageError:  # the service will answer 503 for the request itself
            seq = None
        scope["revu.request_seq"] = seq
        is_events = kind == "events"
        entry: dict[str, Any] = {
            "seq": seq,
            "kind": kind,
            "at_ms": at_ms,
            "finished_ms": None,
            "status": None,
            "n": len(parsed.batch) if is_events and parsed else 0,
            "event_ids": parsed.event_ids if is_events and parsed else [],
            "bytes": len(wire_body),
            "wire_bytes": len(wire_body),
            "body_bytes": len(decoded) if decoded is not None else None,
            "content_encoding": _headers_get(scope, b"content-encoding"),
            "api_key": parsed.api_key if is_events and parsed else None,
            "content_type": _headers_get(scope, b"content-type"),
            "origin": _headers_get(scope, b"origin"),
            "body_keys": parsed.body_keys if parsed else [],
            "idempotency_key": _headers_get(scope, b"idempotency-key"),
            **extra,
            "outcome": "pending",
        }
        with self._lock:
            self._envelopes_seen += entry["n"]
            self._requests.append(entry)
        self.on_change()
        return entry

    def _finish(self, entry: dict[str, Any], status: int | None, outcome: str, **extra: Any) -> None:
        with self._lock:
            entry.update(extra, status=status, outcome=outcome, finished_ms=now_ms())
        self.on_change()

    def _take_step(self, mutation: bool) -> tuple[bool, dict[str, Any] | None, int, frozenset[str]]:
        prefix = "mutation_" if mutation else ""
        with self._lock:
            f = self._faults
            if f[prefix + "offline"]:
                return True, None, 0, frozenset()
            script = f[prefix + "script"]
            step = script.pop(0) if script else None
            delay_ms = step["delay_ms"] if step and step["delay_ms"] is not None else f[prefix + "delay_ms"]
            return False, step, delay_ms, frozenset() if mutation else frozenset(f["poison_events"])

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._app is not None, "FaultLayer.inner() was not called"
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path.startswith("/__control/"):
            await self._control(scope, receive, send)
        elif method == "POST" and path == wire.EVENTS_PATH:
            await self._events(scope, receive, send)
        elif method == "POST" and self.settings.chat and wire.room_of(path):
            await self._mutation(scope, receive, send, wire.room_of(path) or "")
        else:
            await self._app(scope, receive, send)

    async def _call_service(self, scope: Scope, receive: Receive, body: bytes) -> _Captured:
        captured = _Captured()
        assert self._app is not None
        await self._app(scope, _replay_receive(body, receive), captured.send)
        return captured

    @staticmethod
    async def _fault_reply(scope: Scope, receive: Receive, send: Send, status: int, extra: dict[str, str]) -> None:
        await json_response(status, {"ok": False, "code": f"fault_{status}"}, extra)(scope, receive, send)

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info(scope)
        info["route"] = "events"
        at_ms = now_ms()
        limit = self.settings.max_body_bytes
        try:
            body = await read_body(scope, receive, limit)
        except wire.WireError as exc:
            entry = await self._begin("events", scope, at_ms, b"", None, None)
            self._finish(entry, exc.status, "bad_request")
            await error_response(exc)(scope, receive, send)
            return
        except ClientGone:
            return
        try:
            decoded: bytes | None = wire.decode_body(body, _headers_get(scope, b"content-encoding"), limit)[0]
        except wire.WireError:
            decoded = None
        parsed = wire.parse_events_body(decoded) if decoded is not None else None
        entry = await self._begin("events", scope, at_ms, body, decoded, parsed)
        offline, step, delay_ms, poison = self._take_step(mutation=False)
        if offline:
            self._finish(entry, None, "offline")
            await _drop_connection(scope)
            return
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        status = step["status"] if step else 200
        store = step["store"] if step else True
        extra = {"Retry-After": step["retry_after"]} if step and step["retry_after"] is not None else {}
        reject_ids = frozenset(step["reject_ids"]) if step else frozenset()
        fault_2xx = 200 <= status < 300
        usable = parsed is not None and parsed.error is None
        poisoned = usable and bool(poison) and any(
            isinstance(env, dict) and env.get("event") in poison for env in parsed.batch  # type: ignore[union-attr]
        )

        if step and step["drop_reply"]:
            # Ack loss: do the work as usual (storing per `store`), then no reply.
            if store and usable and not (fault_2xx and poisoned):
                await self._store_via_service(scope, receive, body, parsed, reject_ids)
            self._finish(entry, None, "dropped")
            await _drop_connection(scope)
            return
        if not fault_2xx:
            if store and usable:
                await self._store_via_service(scope, receive, body, parsed, reject_ids)
            self._finish(entry, status, "fault")
            await self._fault_reply(scope, receive, send, status, extra)
            return
        if not usable:
            # Malformed, unauthorised or too large: the service says so.
            captured = await self._call_service(scope, receive, body)
            self._finish(entry, captured.status, info.get("outcome", "bad_request"))
            await captured.replay(send)
            return
        if poisoned:
            self._finish(entry, 422, "poison")
            await json_response(422, {"ok": False, "code": "poison"}, extra)(scope, receive, send)
            return
        if not store:
            checked = wire.check_batch(parsed.batch, reject_ids, "rejected_by_test", parsed.texts)  # type: ignore[union-attr]
            self._finish(entry, status, "ok")
            await json_response(status, wire.events_reply(checked.accepted, checked.rejected), extra)(
                scope, receive, send
            )
            return
        captured = await self._store_via_service(scope, receive, body, parsed, reject_ids)
        reply_status = captured.status
        if reply_status == 200:
            reply_status = status  # a 2xx step may ask for 202 ...
        outcome = "ok" if reply_status is not None and 200 <= reply_status < 300 else info.get("outcome", "error")
        self._finish(entry, reply_status, outcome)
        if extra:
            captured.headers.append((b"retry-after", extra["Retry-After"].encode("latin-1")))
        await captured.replay(send, reply_status, captured.rewritten)

    async def _store_via_service(self, scope: Scope, receive: Receive, body: bytes, parsed: Any,
                                 reject_ids: frozenset[str]) -> _Captured:
        """Hand the batch to the service; envelopes in ``reject_ids`` are taken
        out first and put back into its reply as ``rejected_by_test``."""
        batch = parsed.batch
        removed = [isinstance(env, dict) and env.get("event_id") in reject_ids for env in batch]
        if not any(removed):
            return await self._call_service(scope, receive, body)
        kept = [env for env, gone in zip(batch, removed) if not gone]
        new_body = wire.dumps({**parsed.obj, "batch": kept}).encode("utf-8")
        sub_scope = dict(scope)
        sub_scope["headers"] = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
        ] + [(b"content-length", str(len(new_body)).encode())]
        captured = await self._call_service(sub_scope, receive, new_body)
        reply = captured.json()
        rewritten = None
        if isinstance(reply, dict) and reply.get("ok") is True:
            service_rejected = iter(reply.get("rejected", []))
            merged = []
            for env, gone in zip(batch, removed):
                if gone:
                    merged.append({"event_id": env["event_id"], "code": "rejected_by_test"})
                elif wire.envelope_problem(env) is not None:
                    merged.append(next(service_rejected))
            merged.extend(service_rejected)
            reply["rejected"] = merged
            rewritten = wire.dumps(reply).encode("utf-8")
        captured.rewritten = rewritten
        return captured

    async def _mutation(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        info = request_info(scope)
        info["route"] = "chat"
        at_ms = now_ms()
        extra_fields = {"room": room, "effect": None, "message_id": None}
        try:
            body = await read_body(scope, receive, self.settings.max_body_bytes)
        except wire.WireError as exc:
            entry = await self._begin("mutation", scope, at_ms, b"", None, None, **extra_fields)
            self._finish(entry, exc.status, "bad_request")
            await error_response(exc)(scope, receive, send)
            return
        except ClientGone:
            return
        parsed = wire.parse_message_body(body)
        entry = await self._begin("mutation", scope, at_ms, body, body, parsed, **extra_fields)
        offline, step, delay_ms, _ = self._take_step(mutation=True)
        if offline:
            self._finish(entry, None, "offline")
            await _drop_connection(scope)
            return
        # The delay comes before applying: the page may go away meanwhile; a
        # keepalive request still completes and applies.
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        status = step["status"] if step else 200
        apply = step["store"] if step else True
        extra = {"Retry-After": step["retry_after"]} if step and step["retry_after"] is not None else {}
        fault_2xx = 200 <= status < 300

        if step and step["drop_reply"]:
            done: dict[str, Any] = {}
            if apply:
                await self._call_service(scope, receive, body)
                done = {"effect": info.get("effect"), "message_id": info.get("message_id")}
            self._finish(entry, None, "dropped", **done)
            await _drop_connection(scope)
            return
        if not apply:
            self._finish(entry, status, "fault")
            await self._fault_reply(scope, receive, send, status, extra)
            return
        captured = await self._call_service(scope, receive, body)
        done = {"effect": info.get("effect"), "message_id": info.get("message_id")}
        if not fault_2xx:
            # Applied (store: true), yet the client sees the scripted failure.
            self._finish(entry, status, "fault", **done)
            await self._fault_reply(scope, receive, send, status, extra)
            return
        reply_status = captured.status
        if reply_status == 200:
            reply_status = status
        self._finish(entry, reply_status, info.get("outcome", "error"), **done)
        if extra:
            captured.headers.append((b"retry-after", extra["Retry-After"].encode("latin-1")))
        await captured.replay(send, reply_status)

    # -- /__control/ -------------------------------------------------------

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_info(scope)["route"] = "control"
        path, method = scope["path"], scope["method"]
        routes = {
            "/__control/state": ("GET",),
            "/__control/faults": ("GET", "POST"),
            "/__control/reset": ("POST",),
        }
        if path not in routes:
            assert self._app is not None
            await self._app(scope, receive, send)
            return
        if method not in routes[path]:
            allow = ", ".join(sorted(set(routes[path]) | {"OPTIONS"}))
            response: Response = json_response(
                405, {"ok": False, "code": "method_not_allowed", "error": f"{method} not allowed here"},
                {"Allow": allow},
            )
            await response(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.settings.max_body_bytes)
        except wire.WireError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except ClientGone:
            return
        if path == "/__control/state":
            response = await self._get_state(scope)
        elif path == "/__control/reset":
            await self.reset()
            response = json_response(200, {"ok": True})
        elif method == "GET":
            response = json_response(200, self.faults())
        else:
            try:
                update = wire.loads(body) if body.strip() else {}
                response = json_response(200, self.set_faults(update))
            except (UnicodeDecodeError, ValueError) as exc:
                response = json_response(400, {"ok": False, "code": "bad_request", "error": str(exc)})
        await response(scope, receive, send)

    async def _get_state(self, scope: Scope) -> Response:
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tail = None
        if "tail" in query:
            try:
                tail = int(query["tail"][-1])
                if tail < 0:
                    raise ValueError
            except ValueError:
                return json_response(400, {"ok": False, "code": "bad_request", "error": "tail must be an integer >= 0"})
        return json_response(200, await self.state(tail))


def _event_view(e: dict[str, Any]) -> dict[str, Any]:
    """A stored event as ``state()["events"]`` lists it."""
    env = e["envelope"]
    return {
        "event_id": e["event_id"],
        "event": e["event"],
        "properties": env.get("properties", {}) if isinstance(env, dict) else {},
        "created_at": wire.number_or_none(env.get("created_at")),
        "sent_at": wire.number_or_none(env.get("sent_at")),
        "stream": e["stream"],
        "received_at_ms": e["received_at_ms"],
        "envelope": env,
        "api_key": e["api_key"],
        "request_seq": e["request_seq"],
        "receipts": e["receipts"],
    }
