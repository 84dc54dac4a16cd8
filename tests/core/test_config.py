import pytest

from revu import Config, UsageError


def test_defaults_are_the_product_documents():
    config = Config.from_options({"apiKey": "k"})
    assert (config.flush_at, config.flush_interval_ms, config.max_batch, config.max_queue) == (20, 5000, 50, 1000)
    assert (config.backoff_base_ms, config.backoff_max_ms) == (1000, 60000)
    assert config.endpoint == "https://api.revu.ai/v1/behavior/events"


def test_host_trailing_slash():
    assert Config.from_options({"apiKey": "k", "host": "http://x:1/"}).endpoint == "http://x:1/v1/behavior/events"


def test_shim_only_options_are_accepted():
    Config.from_options({"apiKey": "k", "storage": "memory", "storageKey": "a", "assetsUrl": "/revu/",
                         "tabs": False, "snapshotCache": False})


@pytest.mark.parametrize(("options", "message"), [
    ({}, "apiKey is required"),
    ({"apiKey": ""}, "apiKey"),
    ({"apiKey": 5}, "apiKey"),
    ({"apiKey": "k", "flushAt": 0}, "flushAt"),
    ({"apiKey": "k", "maxBatch": "50"}, "maxBatch"),
    ({"apiKey": "k", "maxQueue": True}, "maxQueue"),
    ({"apiKey": "k", "maxBatch": 2000}, "maxBatch cannot exceed maxQueue"),
    ({"apiKey": "k", "host": "ftp://x"}, "host"),
    ({"apiKey": "k", "flushat": 3}, "unknown option 'flushat'"),
    ({"apiKey": "k", "maxBatchBytes": 70_000}, "keepalive budget"),
    ({"apiKey": "k", "debug": "yes"}, "debug"),
])
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(UsageError, match=message):
        Config.from_options(options)


def test_options_round_trip():
    config = Config.from_options({"apiKey": "k", "flushAt": 3, "debug": True})
    assert Config.from_options(config.as_options()) == config
