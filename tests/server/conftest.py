"""Fixtures for the reference ingest server and static server tests.

Helpers are handed out as fixtures (``call``, ``make_envelope``) rather than
imported, so these tests work under any pytest import mode.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402


@dataclass
class Reply:
    status: int
    headers: Message
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def _call(
    method: str,
    url: str,
    body: bytes | str | dict | list | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One HTTP request with urllib; non-2xx answers come back as a Reply.

    Connection-level failures (no reply at all) propagate as OSError.
    """
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if body is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, err.headers, err.read())


def _envelope(event: str = "page_view", **extra: Any) -> dict[str, Any]:
    env = {
        "event_id": str(uuid.uuid4()),
        "event": event,
        "properties": {"path": "/pricing"},
        "created_at": 1_700_000_000_000,
        "sent_at": 1_700_000_000_500,
    }
    env.update(extra)
    return env


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def post_events(ingest: IngestServer) -> Callable[..., Reply]:
    """post_events(batch, api_key="test-key", headers=None, body=None) -> Reply."""

    def post(
        batch: list[Any] | None = None,
        api_key: str = "test-key",
        headers: dict[str, str] | None = None,
        body: bytes | str | dict | None = None,
        timeout: float = 5.0,
    ) -> Reply:
        if body is None:
            body = {"api_key": api_key, "batch": batch or []}
        return _call("POST", ingest.url + "/v1/behavior/events", body, headers, timeout)

    return post


@pytest.fixture
def call() -> Callable[..., Reply]:
    """call(method, url, body=None, headers=None, timeout=5.0) -> Reply."""
    return _call


@pytest.fixture
def make_envelope() -> Callable[..., dict[str, Any]]:
    """make_envelope(event="page_view", **fields) -> a valid envelope with a fresh event_id."""
    return _envelope
