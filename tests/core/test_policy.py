import pytest

from revu._policy import batch_body, backoff_delay_ms, is_transient, parse_retry_after_ms, take_batch
from revu._records import make_record

T0 = 1_700_000_000_000


@pytest.mark.parametrize(("failures", "expected"), [(1, 1000), (2, 2000), (3, 4000), (6, 32000), (7, 60000), (40, 60000)])
def test_backoff_doubles_from_one_second_to_the_cap(failures, expected):
    assert backoff_delay_ms(failures, 0.0, 1000, 60000) == expected


def test_jitter_only_shortens_and_never_passes_the_cap():
    assert backoff_delay_ms(3, 1.0, 1000, 60000) == 3200
    assert backoff_delay_ms(3, 0.5, 1000, 60000) == 3600
    assert all(48000 <= backoff_delay_ms(9, j / 10, 1000, 60000) <= 60000 for j in range(11))


def test_no_failures_no_delay():
    assert backoff_delay_ms(0, 0.3, 1000, 60000) == 0


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 599, 302])
def test_transient(status):
    assert is_transient(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_permanent(status):
    assert not is_transient(status)


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after_ms("1", T0) == 1000
    assert parse_retry_after_ms(" 120 ", T0) == 120_000
    # T0 is 2023-11-14T22:13:20Z
    assert parse_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", T0) == 30_000
    assert parse_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", T0) == 0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_bad_retry_after_is_ignored(value):
    assert parse_retry_after_ms(value, T0) is None


def _rec(i, size=10):
    return make_record(f"e{i}", i, {"event_id": f"e{i}", "event": "x", "properties": {"p": "a" * size}, "created_at": 1})


def test_take_batch_by_count():
    records = [_rec(i) for i in range(10)]
    assert [r.event_id for r in take_batch(records, 4, 60_000, "k", T0)] == ["e0", "e1", "e2", "e3"]


@pytest.mark.parametrize("budget", [1_200, 5_000, 10_000, 10_330])
def test_take_batch_by_bytes_is_exact(budget):
    records = [_rec(i, size=1000) for i in range(100)]
    batch = take_batch(records, 50, budget, "kéy", T0)
    body = batch_body("kéy", (r.env_json for r in batch), T0).encode()
    assert len(body) <= budget
    more = batch_body("kéy", (r.env_json for r in records[:len(batch) + 1]), T0).encode()
    assert len(more) > budget, "one more record would not have fitted"


def test_take_batch_sends_an_oversized_record_alone():
    records = [_rec(0, size=20_000), _rec(1)]
    assert [r.event_id for r in take_batch(records, 50, 10_000, "k", T0)] == ["e0"]


def test_batch_body_splices_the_stored_envelopes():
    body = batch_body("k", ['{"event_id":"a","x":"é"}', '{"event_id":"b"}'], 12)
    assert body == '{"api_key":"k","batch":[{"event_id":"a","x":"é","sent_at":12},{"event_id":"b","sent_at":12}]}'



@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_retry_after_http_date_ignores_the_host_time_zone(zone, monkeypatch):
    # "-0000" makes email.utils return no offset; reading that as local time
    # gave 0 ms in Tokyo and 30,000 ms in UTC for the same facts.
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("this interpreter cannot change its time zone")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        if zone != "UTC" and time.localtime(T0 // 1000).tm_gmtoff == 0:
            pytest.skip(f"no time zone data for {zone} here")
        assert parse_retry_after_ms("Tue, 14 Nov 2023 22:13:50 -0000", T0) == 30_000
        assert parse_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", T0) == 30_000
        assert parse_retry_after_ms("Tue, 14 Nov 2023 23:13:50 +0100", T0) == 30_000
    finally:
        monkeypatch.undo()
        time.tzset()


def test_send_order_keeps_records_of_equal_seq_apart():
    # Two tabs recording in the same millisecond give two records one seq.
    records = [make_record(f"e{i}", 1000, {"event_id": f"e{i}", "event": "x", "properties": {}, "created_at": 1})
               for i in range(4)]
    from revu._policy import send_order

    assert [r.event_id for r in send_order(records)] == ["e0", "e1", "e2", "e3"]
