import sys
from pathlib import Path

# On CPython the package is installed (pip install -e .); this also lets the
# tests run from a bare checkout. In Pyodide the wheel is installed and
# helpers.py sits beside the tests.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SRC = HERE.parents[1] / "py_src"
if SRC.is_dir():
    sys.path.insert(0, str(SRC))
