"""The shim and the core agree, case by case, on every rule that exists in
both languages: the stored-value checks, capture, the rules read from init()
options, the request body, and the lone-surrogate repair.

The expected values come from the core (``make_cases.py`` wrote them); this
test checks that both implementations still give them. (CPython only: the
Pyodide runs copy tests/core alone.)
"""

import json
import math
import subprocess
from pathlib import Path

import pytest

from revu import Config
from revu._capture import CaptureError, capture_event, capture_mutation
from revu._policy import batch_body
from revu._records import CorruptRecord, decode_dead_letter, decode_record, repair_surrogates

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _load(name):
    return json.loads((HERE / name).read_text())


def _js(kind, name):
    out = subprocess.run(["node", str(HERE / "run_js.mjs"), kind, str(HERE / name)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _py_stored(case):
    try:
        (decode_dead_letter if case["dead"] else decode_record)(case["raw"], key=case["id"])
        return "ok"
    except CorruptRecord as exc:
        return exc.reason


def _py_capture(case):
    ctx = {"event_id": case["event_id"], "now_ms": case["now_ms"], "seq": case["seq"]}
    try:
        if case["kind"] == "event":
            return {"raw": capture_event(case["event"], case["properties"], case["options"], **ctx).raw}
        return {"raw": capture_mutation(case["spec"], idempotency_key=case["idempotency_key"], **ctx).raw}
    except CaptureError as exc:
        return {"error": exc.code}


SUITES = {
    "stored": ("stored_cases.json", _py_stored),
    "capture": ("capture_cases.json", _py_capture),
    "rules": ("rules_cases.json", lambda c: Config.from_options({"apiKey": "k", **c["options"]}).rules()),
    "body": ("body_cases.json", lambda c: batch_body(c["api_key"], c["envs"], c["now_ms"])),
    "surrogate": ("surrogate_cases.json", lambda c: repair_surrogates(c["text"])[0]),
}


@pytest.mark.parametrize("kind", sorted(SUITES))
def test_core_gives_the_expected_values(kind):
    name, run = SUITES[kind]
    cases = _load(name)
    assert len(cases) >= 3
    for case in cases:
        assert run(case) == case["expect"], case


@pytest.mark.parametrize("kind", sorted(SUITES))
def test_shim_gives_the_same_values(kind):
    name, _ = SUITES[kind]
    cases = _load(name)
    got = _js(kind, name)
    mismatches = [(case, value) for case, value in zip(cases, got) if value != case["expect"]]
    assert not mismatches, json.dumps(mismatches[:3], ensure_ascii=True)[:3000]


def test_the_cases_cover_every_quarantine_reason_and_capture_code():
    reasons = {c["expect"] for c in _load("stored_cases.json")}
    assert reasons >= {"ok", "too_large", "too_deep", "not_json", "unknown_version", "unsafe_seq", "key_mismatch",
                       "invalid_record"}
    codes = {c["expect"].get("error") for c in _load("capture_cases.json")}
    assert codes >= {None, "invalid_event", "invalid_properties", "invalid_options", "invalid_mutation",
                     "too_deep", "too_many_members", "too_large"}


def test_driver_runs_every_command_the_core_can_send():
    import re

    from revu import _commands as c
    from revu._bridge import snake_case

    source = (ROOT / "js_shim" / "driver.js").read_text()
    handled = set(re.findall(r'case "([a-z_]+)":', source))
    commands = {snake_case(cls.__name__) for cls in vars(c).values()
                if isinstance(cls, type) and issubclass(cls, c.Command) and cls is not c.Command}
    assert commands == handled
    assert "default:\n        throw" in source
