"""Fixtures for the Python runtimes: the reference ingest server (in-process,
SQLite, ephemeral port, with its fault switches) and a child-process runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402

CHILD = Path(__file__).with_name("child.py")


@pytest.fixture(scope="session")
def _server(tmp_path_factory):
    server = IngestServer(db_path=str(tmp_path_factory.mktemp("ingest") / "events.sqlite3")).start()
    yield server
    server.stop()


@pytest.fixture
def ingest(_server):
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def spawn():
    """Start ``child.py`` with arguments; every child is killed at teardown."""
    children: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "py_src"))
        proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        children.append(proc)
        return proc

    yield start
    for proc in children:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def report():
    """``report(name, **figures)``: one line of figures in the test output
    (shown with ``-s``). A fixture, not an import: several test folders have
    a conftest.py, so importing one by name is ambiguous."""
    def print_figures(name: str, **figures) -> None:
        print(f"[runtimes] {name}: " + json.dumps(figures, sort_keys=True))
    return print_figures
