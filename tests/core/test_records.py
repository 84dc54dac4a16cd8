import json
from pathlib import Path

import pytest

from revu._records import (
    SCHEMA_VERSION, CorruptRecord, DeadLetter, decode_dead_letter, decode_record, encode_record, make_record,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_round_trip():
    env = {"event_id": "a", "event": "signup", "properties": {"plan": "pro", "ü": "✓"}, "created_at": 5, "stream": "s"}
    record = make_record("a", 7, env)
    assert decode_record(encode_record(record)) == record
    assert record.size_bytes == len(json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode())
    assert record.stream == "s"


def test_version_1_fixture_still_decodes():
    # The stored format is a contract with pages already in the field: a
    # schema change adds a fixture instead of editing this one.
    raw = (FIXTURES / "record_v1.json").read_text()
    record = decode_record(raw)
    assert record.event_id == "7d5e0c1e-9a7b-4a39-9d0b-3f0c2d6c1a11"
    assert record.seq == 1700000000000001
    assert record.envelope["properties"] == {"plan": "pro"}
    letter = decode_dead_letter((FIXTURES / "dead_letter_v1.json").read_text())
    assert (letter.reason, letter.status, letter.attempts) == ("http_422", 422, 1)
    with_meta = decode_record((FIXTURES / "record_v1_meta.json").read_text())
    assert with_meta.mutation is not None and with_meta.mutation.idempotency_key == "k-1"
    assert (with_meta.stream, with_meta.category, with_meta.meta["ttl_ms"]) == ("room-1", "necessary", 60000)
    assert decode_record(encode_record(with_meta)) == with_meta


@pytest.mark.parametrize("raw", [
    "not json", "[]", "{}", '{"v": 2, "seq": 1, "env": {}}',
    '{"v": 1, "seq": "1", "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": 1}}',
    '{"v": 1, "seq": 1, "env": {"event": "x", "properties": {}, "created_at": 1}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "", "event": "x", "properties": {}, "created_at": 1}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": 3, "properties": {}, "created_at": 1}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": [], "created_at": 1}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": "now"}}',
    None,
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": 1}, "sealed": {}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": 1, "priority": "urgent"}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": 1}, "meta": {"ttl_ms": 0}}',
    '{"v": 1, "seq": 1, "env": {"event_id": "a", "event": "x", "properties": {}, "created_at": 1}, '
    '"mutation": {"method": "GET", "url": "https://x", "headers": {}, "idempotency_key": "k"}}',
])
def test_corrupt_values_are_refused(raw):
    with pytest.raises(CorruptRecord):
        decode_record(raw)


def test_dead_letter_round_trip():
    record = make_record("a", 1, {"event_id": "a", "event": "x", "properties": {}, "created_at": 1})
    letter = DeadLetter(record, "http_400", 400, 2, 99)
    assert decode_dead_letter(json.dumps(letter.to_json())) == letter
    assert letter.to_json()["v"] == SCHEMA_VERSION


def test_an_older_version_is_migrated_never_deleted(monkeypatch):
    # How a schema bump works: MIGRATIONS[n] lifts a version-n value to n + 1,
    # and a version-n record then decodes as a current one.
    from revu import _records

    def from_zero(value):
        return {**value, "v": 1, "env": {**value["env"], "properties": value["env"].pop("props")}}

    monkeypatch.setitem(_records.MIGRATIONS, 0, from_zero)
    old = json.dumps({"v": 0, "seq": 3, "env": {"event_id": "a", "event": "x", "props": {"k": 1}, "created_at": 1}})
    record = decode_record(old, key="a")
    assert record.envelope["properties"] == {"k": 1}
    assert json.loads(record.env_json) == record.envelope
    monkeypatch.delitem(_records.MIGRATIONS, 0)
    with pytest.raises(CorruptRecord) as err:
        decode_record(old, key="a")
    assert err.value.reason == "unknown_version"
