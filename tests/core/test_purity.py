"""The core never does I/O: no clock, randomness, network or Pyodide imports."""

import ast
from pathlib import Path

import revu

FORBIDDEN = {"time", "random", "uuid", "os", "asyncio", "logging", "js", "pyodide", "socket",
             "urllib", "http", "threading", "datetime", "secrets", "sqlite3", "subprocess"}


def _core_modules():
    package = Path(revu.__file__).parent
    return [p for p in package.glob("*.py")]


def test_core_modules_import_nothing_impure():
    modules = _core_modules()
    assert len(modules) >= 9
    for path in modules:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_same_facts_same_commands():
    from helpers import FakeBrowser

    def run():
        b = FakeBrowser(flushAt=3)
        for i in range(7):
            b.record(n=i)
        b.deliver("status", status=503, jitter=0.37)
        b.advance(2000)
        b.settle()
        return b.history

    assert run() == run()
