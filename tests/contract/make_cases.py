"""Regenerate the shared case files from the core's rules.

    .venv/bin/python tests/contract/make_cases.py

Run it when a rule changes on purpose, then read the diff: the files are the
contract the shim is tested against (``test_shared_cases.py``), so an
unintended change shows up there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "py_src"))

from revu import Config  # noqa: E402
from revu._capture import CaptureError, capture_event, capture_mutation  # noqa: E402
from revu._policy import batch_body  # noqa: E402
from revu._records import CorruptRecord, decode_dead_letter, decode_record, repair_surrogates  # noqa: E402

UUID = "7d5e0c1e-9a7b-4a39-9d0b-3f0c2d6c1a11"
OTHER = "0b8f2c4e-1d2a-4c3b-8e9f-123456789abc"


def rec(**over):
    value = {"v": 1, "seq": 1700000000000001, "env": {"event_id": UUID, "event": "e", "properties": {"a": 1},
                                                        "created_at": 1700000000000}}
    for key, val in over.items():
        if key.startswith("env_"):
            value["env"][key[4:]] = val
        elif val is None:
            value.pop(key, None)
        else:
            value[key] = val
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


STORED = [
    (UUID, rec(), False),
    (UUID, rec(meta={"category": "ads", "ttl_ms": 5, "pii": ["email"]}), False),
    (UUID, rec(mutation={"method": "post", "url": "https://a.test/m", "body": {"t": 1}, "headers": {"h": "v"},
                         "idempotency_key": "k"}), False),
    (UUID, rec(env_stream="room", env_priority="high", env_keys={"messageId": "m1"}), False),
    (UUID, rec(reason="http_422", status=422, attempts=1, at_ms=5), True),
    (UUID, rec(reason="http_422", status=None), True),
    (UUID, rec(seq=1.0), False),
    (UUID, "x" * 65537, False),
    (UUID, '{"s":"' + "é" * 33000 + '"}', False),
    (UUID, "[" * 40 + "]" * 40, False),
    (UUID, '{"a":' * 40 + "1" + "}" * 40, False),
    (UUID, '["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', False),
    (UUID, "{not json", False),
    (UUID, "[1,2]", False),
    (UUID, "null", False),
    (UUID, "", False),
    (UUID, rec(v=2), False),
    (UUID, rec(v="1"), False),
    (UUID, rec(v=None), False),
    (UUID, rec(seq=2**53), False),
    (UUID, rec(seq=-1), False),
    (UUID, rec(seq=1.5), False),
    (UUID, rec(seq="1"), False),
    ("not-a-uuid", rec(), False),
    (OTHER, rec(), False),
    (UUID, rec(extra=1), False),
    (UUID, rec(reason="x"), False),
    (UUID, rec(env=[]), False),
    (UUID, rec(env_event_id=""), False),
    (UUID, rec(env_event=""), False),
    (UUID, rec(env_properties=[]), False),
    (UUID, rec(env_created_at=-5), False),
    (UUID, rec(env_created_at=1.5), False),
    (UUID, rec(env_stream=""), False),
    (UUID, rec(env_priority="urgent"), False),
    (UUID, rec(env_keys={"a": 1}), False),
    (UUID, rec(meta=[]), False),
    (UUID, rec(meta={"category": ""}), False),
    (UUID, rec(meta={"ttl_ms": 0}), False),
    (UUID, rec(meta={"pii": "x"}), False),
    (UUID, rec(mutation={"method": "GET", "url": "https://a", "headers": {}, "idempotency_key": "k"}), False),
    (UUID, rec(mutation={"method": "POST", "url": "/rel", "headers": {}, "idempotency_key": "k"}), False),
    (UUID, rec(mutation={"method": "POST", "url": "https://a", "headers": {"h": 1}, "idempotency_key": "k"}), False),
    (UUID, rec(mutation={"method": "POST", "url": "https://a", "headers": {}, "idempotency_key": ""}), False),
    (UUID, rec(reason=3), True),
    (UUID, rec(reason="r", status="x"), True),
    (UUID, rec(reason="r", attempts=-1), True),
    (UUID, rec(env_properties={"s": "\ud800"}).replace("\\ud800", "\\ud800"), False),
    (UUID, '{"v":1,"seq":1,"env":{"event_id":"' + UUID + '","event":"e","properties":{"n":NaN},"created_at":1}}', False),
]

SURROGATES = [
    '{"s":"\\ud800"}', '{"s":"a\\udc00b"}', '{"s":"\\ud83d\\ude00"}', '{"s":"\\\\ud800"}', '{"s":"\\\\\\ud800"}',
    '{"s":"\ud800x"}', '{"s":"\\uD800\\uDC00"}', '{"s":"\\udbff"}', "plain",
]


def stored_cases():
    out = []
    for key, raw, dead in STORED:
        try:
            (decode_dead_letter if dead else decode_record)(raw, key=key)
            expect = "ok"
        except CorruptRecord as exc:
            expect = exc.reason
        out.append({"id": key, "raw": raw, "dead": dead, "expect": expect})
    return out


EVENTS = [
    ("signup", {"plan": "pro", "n": 1, "f": 2.5, "l": [1, None, True], "o": {"x": {}}}, None),
    ("e", None, {"stream": "s", "priority": "low", "keys": {"messageId": "m1"}}),
    ("e", {"big": 1e21, "small": 1e-7, "neg": -0.0, "int_float": 3.0, "huge_int": 2**60}, None),
    ("e", {"s": "\ud800", "\ud83d": "x", "q": 'a"b\\c\n\u0001\u2028'}, None),
    ("e\ud800", {}, {"category": "marketing", "ttlMs": 5000, "pii": ["email"]}),
    ("e", {}, {"category": "analytics", "pii": True}),
    ("e", {}, {"pii": False, "stream": None}),
    ("", {}, None), ("x" * 201, {}, None), ("é" * 100, {}, None), ("é" * 101, {}, None),
    ("e", [], None), ("e", "str", None), ("e", 5, None),
    ("e", {}, {"bogus": 1}), ("e", {}, []), ("e", {}, {"stream": ""}), ("e", {}, {"stream": "s" * 201}),
    ("e", {}, {"priority": "urgent"}), ("e", {}, {"keys": {"a": 1}}),
    ("e", {}, {"keys": {f"k{i}": "v" for i in range(17)}}), ("e", {}, {"ttlMs": 0}), ("e", {}, {"ttlMs": 1.5}),
    ("e", {}, {"pii": []}), ("e", {}, {"pii": "email"}), ("e", {}, {"pii": ["x"] * 65}), ("e", {}, {"category": ""}),
    ("e", {"d": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, None),
    ("e", {"d": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, None),
    ("e", {f"k{i}": i for i in range(1000)}, None), ("e", {f"k{i}": i for i in range(1001)}, None),
    ("e", {"a": list(range(999))}, None), ("e", {"a": list(range(1000))}, None),
    ("e", {"s": "x" * 32600}, None), ("e", {"s": "x" * 32700}, None), ("e", {"s": "é" * 16400}, None),
]

MUTATIONS = [
    {"url": "https://a.test/m", "body": {"text": "hi"}, "stream": "room-1"},
    {"url": "https://a.test/m", "method": "put", "headers": {"X-A": "1"}, "idempotencyKey": "k1"},
    {"url": "https://a.test/m", "body": "raw text"},
    {"url": "https://a.test/m"},
    {"url": "ftp://a.test/m"}, {"url": "https://a.test/m", "method": "GET"}, {"url": "https://a.test/m", "headers": {"a": 1}},
    {"url": "https://a.test/m", "idempotencyKey": ""}, {"url": "https://a.test/m", "bogus": 1}, {}, {"url": 42},
    {"url": "https://a.test/" + "x" * 8200}, {"url": "https://a.test/m", "stream": ""},
    {"url": "https://a.test/m", "body": {"s": "x" * 33000}},
    {"url": "https://a.test/m", "headers": {f"h{i}": "v" for i in range(33)}},
]


def capture_cases():
    out = []
    for index, (event, props, options) in enumerate(EVENTS):
        ctx = {"event_id": f"id-{index}", "now_ms": 1700000000000 + index, "seq": 1700000000000000 + index}
        try:
            expect = {"raw": capture_event(event, props, options, **ctx).raw}
        except CaptureError as exc:
            expect = {"error": exc.code}
        out.append({"kind": "event", "event": event, "properties": props, "options": options, **ctx, "expect": expect})
    for index, spec in enumerate(MUTATIONS):
        ctx = {"event_id": f"m-{index}", "now_ms": 1700000000000, "seq": 1700000000000000 + index}
        try:
            expect = {"raw": capture_mutation(spec, idempotency_key="gen-key", **ctx).raw}
        except CaptureError as exc:
            expect = {"error": exc.code}
        out.append({"kind": "mutation", "spec": spec, "idempotency_key": "gen-key", **ctx, "expect": expect})
    return out


RULE_OPTIONS = [
    {}, {"maxQueue": 20000}, {"maxQueue": 5, "maxBatch": 5, "flushAt": 5}, {"maxQueueBytes": 1000},
    {"maxEventBytes": 1000}, {"maxBatchBytes": 2000, "maxEventBytes": 1000},
    {"coalesce": {"typing": {"windowMs": 1000}, "cursor": {"ttlMs": 50}}},
]


def rules_cases():
    return [{"options": opts, "expect": Config.from_options({"apiKey": "k", **opts}).rules()} for opts in RULE_OPTIONS]


def body_cases():
    envs = ['{"event_id":"a","event":"x","properties":{"é":"😀"},"created_at":1}',
            '{"event_id":"b","event":"y","properties":{},"created_at":2,"stream":"s"}']
    return [{"api_key": key, "envs": e, "now_ms": now, "expect": batch_body(key, e, now)}
            for key, e, now in [("k", envs, 1700000000123), ('k"é', envs[:1], 5), ("k", [], 1)]]


def surrogate_cases():
    return [{"text": text, "expect": repair_surrogates(text)[0]} for text in SURROGATES]


def main() -> None:
    files = {"stored_cases.json": stored_cases(), "capture_cases.json": capture_cases(),
             "rules_cases.json": rules_cases(), "body_cases.json": body_cases(),
             "surrogate_cases.json": surrogate_cases()}
    for name, cases in files.items():
        # ensure_ascii: lone surrogates must survive the file as escapes.
        (HERE / name).write_text(json.dumps(cases, indent=1, ensure_ascii=True, allow_nan=True) + "\n")
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
