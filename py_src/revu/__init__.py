"""revu: the sans-I/O core of a browser SDK that never loses an event."""

from ._bridge import Bridge
from ._config import Config
from ._errors import UsageError
from ._outbox import Outbox
from ._records import SCHEMA_VERSION, DeadLetter, Record
from ._state import State

__version__ = "0.1.0"

# `import revu; revu.init(...)`: the page/process API of the runtime for this
# interpreter (revu.runtimes.pyodide under Pyodide, revu.runtimes.cpython
# elsewhere), imported on first use only, so the core alone imports no I/O.
_RUNTIME_API = frozenset({"init", "record", "flush", "status", "on", "close", "client", "Client", "RecordError"})


def __getattr__(name: str):  # PEP 562
    if name not in _RUNTIME_API:
        raise AttributeError(f"module 'revu' has no attribute {name!r}")
    import sys

    if sys.platform == "emscripten":
        from .runtimes import pyodide as runtime
    else:
        from .runtimes import cpython as runtime
    return getattr(runtime, name)

__all__ = [
    "Bridge",
    "Config",
    "DeadLetter",
    "Outbox",
    "Record",
    "SCHEMA_VERSION",
    "State",
    "UsageError",
    "__version__",
]
