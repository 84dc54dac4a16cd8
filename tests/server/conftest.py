"""Fixtures for the ingest service and static server tests.

Every test that uses ``ingest``, ``make_server`` or ``db_url`` runs twice:
against SQLite and against PostgreSQL. PostgreSQL comes from
``REVU_TEST_PG_URL`` (``./dev test`` starts a throwaway cluster and exports
it); without it these fixtures start their own cluster with
scripts/pg_throwaway.py when PostgreSQL is installed, and skip the
PostgreSQL half otherwise (``REVU_REQUIRE_PG=1`` turns that skip into a
failure; ``./dev test`` sets it). Each test gets its own PostgreSQL schema.

Helpers are handed out as fixtures (``call``, ``make_envelope``) rather than
imported, so these tests work under any pytest import mode.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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

sys.path.insert(0, str(ROOT / "scripts"))
import pg_throwaway  # noqa: E402


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


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str | None]:
    """A PostgreSQL URL for the whole session, or None (PostgreSQL tests skip)."""
    url = os.environ.get("REVU_TEST_PG_URL")
    if url:
        yield url
        return
    try:
        pg_throwaway.bin_dir()
    except FileNotFoundError as exc:
        if os.environ.get("REVU_REQUIRE_PG") == "1":
            pytest.fail(f"REVU_REQUIRE_PG=1 but {exc}")
        yield None
        return
    directory = tempfile.mkdtemp(prefix="revu-pg-tests-")
    try:
        yield pg_throwaway.start(directory)
    finally:
        pg_throwaway.stop(directory)


def schema_url(base: str, schema: str) -> str:
    return f"{base}&options=-csearch_path%3D{schema}" if "?" in base else f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema_url(pg_base_url: str | None) -> Iterator[str]:
    """A fresh, empty schema in the session's PostgreSQL, dropped afterwards."""
    if pg_base_url is None:
        pytest.skip("PostgreSQL is not installed and REVU_TEST_PG_URL is not set")
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(pg_base_url, schema)
    finally:
        with psycopg.connect(pg_base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that outlives one server (restart tests): a SQLite file or a PostgreSQL schema."""
    if backend == "sqlite":
        return "sqlite:///" + str(tmp_path / "ingest.sqlite3")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def make_server(backend: str, request: pytest.FixtureRequest) -> Callable[..., IngestServer]:
    """make_server(**kwargs) -> an IngestServer (not started) on this test's
    backend: in-memory SQLite, or this test's PostgreSQL schema."""
    url = None if backend == "sqlite" else request.getfixturevalue("pg_schema_url")

    def make(**kwargs: Any) -> IngestServer:
        if url is not None and "db_url" not in kwargs:
            kwargs["db_url"] = url
        return IngestServer(**kwargs)

    return make


@pytest.fixture
def ingest(make_server: Callable[..., IngestServer]) -> Iterator[IngestServer]:
    server = make_server().start()
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
