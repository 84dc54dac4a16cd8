"""The revu wheel loads and imports inside Pyodide (node and Chromium runtimes).

Run with: pytest tests/pyodide --runtime node,chrome --dist-dir=build/pyodide-test-dist
(./dev test pyodide). `revu` is loaded from the test distribution's lock file, which
scripts/build_dist.py writes with the same wheel as dist/.
"""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["revu"])
def test_revu_imports_in_pyodide(selenium):
    import sys

    import revu

    assert sys.platform == "emscripten"
    assert isinstance(revu.__version__, str) and revu.__version__
