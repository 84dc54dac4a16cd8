"""pytest plugin: make pytest-pyodide's ``--run-in-pyodide`` report real results.

Loaded by ./dev for the "core in Pyodide" suites:

    PYTHONPATH=scripts python -m pytest -p pytest_pyodide_fix --run-in-pyodide tests/core \
        --runtime node --dist-dir=build/pyodide-test-dist

Why: in pytest-pyodide 0.59.2, ``--run-in-pyodide`` copies each test folder to
``test_files/<path>`` in Pyodide's file system but runs ``pytest.main([nodeid])`` from
Pyodide's home folder, where ``<path>`` does not exist. pytest exits 4 ("file or
directory not found"), and the host only looks for ``<failure>`` elements in the junit
XML, so every test "passes" without running (upstream issue
https://github.com/pyodide/pytest-pyodide/issues/81, still open). Collection errors
(``<error>``) are ignored the same way.

This plugin replaces that function: it runs the test from ``test_files``, fails the
host test on any non-zero pytest exit code or any ``<failure>``/``<error>``, passes
skips through and raises the script timeout (hypothesis in WebAssembly is slower than
the 20 s default). It also stops upstream from shallow-copying test items (which breaks
every parametrized or fixture-using test at setup) and makes pytest-pyodide's browser
shutdown idempotent (it otherwise prints an AttributeError from ``__del__`` at exit).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import pytest_pyodide
import pytest_pyodide.hook as _hook
import pytest_pyodide.run_tests_inside_pyodide as _inside

SUPPORTED = ("0.59.",)
DEFAULT_TIMEOUT_S = 300  # per test run inside Pyodide (upstream default: 20 s per script)

_version = getattr(pytest_pyodide, "__version__", "")
if not _version.startswith(SUPPORTED) or not hasattr(_hook, "run_test_in_pyodide"):
    raise RuntimeError(
        f"scripts/pytest_pyodide_fix.py was written for pytest-pyodide {SUPPORTED}, found {_version!r}: "
        "check whether upstream fixed --run-in-pyodide (issue #81) and update or drop this plugin")

# Runs inside Pyodide. The host's node id is relative to the repo root, and hook.py
# copied the test folder to test_files/<same relative path>.
_IN_PYODIDE = """
import contextlib, io, os, pytest
_home = os.getcwd()
_out = io.StringIO()
_xml = os.path.join(_home, "revu_test_output.xml")
if os.path.exists(_xml):
    os.remove(_xml)
os.chdir(os.path.join(_home, "test_files"))
try:
    with contextlib.redirect_stdout(_out), contextlib.redirect_stderr(_out):
        _rc = int(pytest.main(ARGS + ["--junitxml", _xml]))
finally:
    os.chdir(_home)
_report = ""
if os.path.exists(_xml):
    with open(_xml) as _f:
        _report = _f.read()
[_rc, _report, _out.getvalue()]
"""


def run_test_in_pyodide(node_tree_id, selenium, ignore_fail=False):
    __tracebackhide__ = True
    args = [node_tree_id, "--color=no", "-p", "no:cacheprovider", "-o", "junit_logging=out-err"]
    code = _IN_PYODIDE.replace("ARGS", json.dumps(args))
    old_timeout = selenium.script_timeout
    selenium.set_script_timeout(max(old_timeout or 0, DEFAULT_TIMEOUT_S))
    try:
        rc, report, output = selenium.run_async(code)
    finally:
        selenium.set_script_timeout(old_timeout)

    problems, skips = [], []
    if report:
        root = ET.fromstring(report)
        for case in root.iter("testcase"):
            for tag in ("failure", "error"):
                for el in case.findall(tag):
                    problems.append(f"[{tag}] {el.get('message', '')}\n{el.text or ''}".rstrip())
            for el in case.findall("skipped"):
                skips.append(el.get("message", "") or "skipped in Pyodide")
    if rc == 0 and not problems:
        if skips and not ignore_fail:
            pytest.skip("; ".join(skips))
        return True
    if ignore_fail:
        return False
    if not problems:
        problems.append(f"pytest inside Pyodide exited {rc} for {node_tree_id} without running it")
    pytest.fail(f"pytest exit code {rc} inside Pyodide\n" + "\n\n".join(problems)
                + "\n\n--- pytest output inside Pyodide ---\n" + output[-8000:], pytrace=False)


def _close(self):
    cm, self.ctx_manager = getattr(self, "ctx_manager", None), None
    if cm is not None:
        cm.__exit__(None, None, None)
        self.__dict__.pop("value", None)


def modifyitems_run_in_pyodide(items):
    # Upstream shallow-copies every item once per runtime. The copies share the
    # original's fixture request, so any test with a function-scoped fixture or a
    # parametrize argument errors at setup ("assert node in self.stack"). With one
    # runtime per invocation the originals can simply be tagged.
    runtimes = sorted(pytest_pyodide.hook.pytest_wrapper.pyodide_runtimes)
    if len(runtimes) != 1:
        raise pytest.UsageError(f"--run-in-pyodide: pass exactly one --runtime per run (got {runtimes})")
    for item in items:
        item.pyodide_runtime = runtimes[0]


_hook.run_test_in_pyodide = run_test_in_pyodide
_inside.run_test_in_pyodide = run_test_in_pyodide
_hook.modifyitems_run_in_pyodide = modifyitems_run_in_pyodide
_inside.ContextManagerUnwrapper.close = _close
