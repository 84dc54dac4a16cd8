"""The events body parser's fast walk (``_wire.parse_events_body``) against
``json.loads``: the same object for every body, the same error for every bad
one, and each envelope's text exactly as it appeared in the body.

The fast walk exists so that envelopes are stored as sent instead of being
encoded again (the largest cost of a request); these tests pin that it never
parses a body differently from the standard parser.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ingest" / "src"))

from revu_ingest import _wire as wire  # noqa: E402

WS = ["", " ", "\n", "\t", "\r\n  "]


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return rng.uniform(-1e300, 1e300)
    if kind in (3, 4):
        return "".join(rng.choice(['a', 'é', '"', '\\', '/', '\n', '\u2028', '😀', '\x01', ' ']) for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        return {f"k{rng.randrange(5)}": _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _dump(value, rng: random.Random) -> str:
    """JSON text for ``value`` with random whitespace and random escaping."""
    w = lambda: rng.choice(WS)  # noqa: E731
    if isinstance(value, dict):
        inner = ",".join(f"{w()}{json.dumps(k, ensure_ascii=rng.random() < 0.5)}{w()}:{w()}{_dump(v, rng)}{w()}"
                         for k, v in value.items())
        return "{" + (inner or w()) + "}"
    if isinstance(value, list):
        return "[" + (",".join(f"{w()}{_dump(v, rng)}{w()}" for v in value) or w()) + "]"
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def test_fast_walk_matches_json_loads_on_random_bodies():
    rng = random.Random(20261123)
    walked = 0
    for _ in range(3000):
        body = {f"k{rng.randrange(3)}": _value(rng) for _ in range(rng.randrange(3))}
        body["api_key"] = "k"
        if rng.random() < 0.9:
            body["batch"] = [_value(rng) if rng.random() < 0.2 else {"event_id": f"e{n}", "event": "x",
                                                                    "p": _value(rng)} for n in range(rng.randrange(6))]
        keys = list(body)
        rng.shuffle(keys)
        text = rng.choice(WS) + _dump({k: body[k] for k in keys}, rng) + rng.choice(WS)
        roll = rng.random()
        if roll < 0.05:  # a repeated "batch": the last one wins
            text = text.replace("{", '{"batch": 7, ', 1)
        elif roll < 0.1:
            end = text.rindex("}")
            text = text[:end] + ', "batch": 7' + text[end:]
        parsed = wire.parse_events_body(text.encode("utf-8"))
        expected = json.loads(text)
        assert parsed.obj == expected
        if isinstance(expected.get("batch"), list):
            walked += 1
            assert parsed.texts is not None and len(parsed.texts) == len(expected["batch"])
            for source, element in zip(parsed.texts, expected["batch"]):
                assert json.loads(source) == element
                assert source in text
        else:
            assert parsed.texts is None
    assert walked > 2000


@pytest.mark.parametrize(
    "text",
    [
        "", " ", "nope", "[1]", '"s"', "{", '{"a"', '{"a":', '{"a":1', '{"a":1,}', '{,}', '{"a" 1}', '{"batch":[1,]}',
        '{"batch":[1 2]}', '{"batch":[', '{"a":1}x', '{"a":NaN}', '{"batch":[Infinity]}', '{"a":"\x01"}',
        '\ufeff{"a":1}', '{"a":1}{"b":2}', '{"batch":[{"event_id":"a\\ud800"}]}', '{1:2}', "{'a':1}",
    ],
)
def test_fast_walk_agrees_with_json_loads_on_edge_cases(text):
    parsed = wire.parse_events_body(text.encode("utf-8"))
    try:
        expected = json.loads(text, parse_constant=wire._reject_constant)
    except ValueError:
        assert parsed.reason == "invalid_json" and parsed.obj is None
        return
    if isinstance(expected, dict):
        assert parsed.obj == expected
    else:
        assert parsed.reason == "not_an_object"


def test_stored_text_is_the_source_unless_it_holds_an_escape():
    body = ('{"api_key":"k","batch":[ {"event_id" : "a", "event":"x", "n": 1.50} ,'
            '{"event_id":"b","event":"x","t":"\\u00e9"},'
            '{"event_id":"c","event":"x","t":"\\ud800"}]}')
    parsed = wire.parse_events_body(body.encode())
    checked = wire.check_batch(parsed.batch, texts=parsed.texts)
    assert checked.accepted == ["a", "b"]
    assert [r["event_id"] for r in checked.rejected] == ["c"]
    a, b = checked.rows
    assert a.envelope == '{"event_id" : "a", "event":"x", "n": 1.50}'  # as sent
    assert json.loads(b.envelope) == {"event_id": "b", "event": "x", "t": "é"}
