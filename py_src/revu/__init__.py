"""revu: the sans-I/O core of a browser SDK that never loses an event."""

from ._bridge import Bridge
from ._config import Config
from ._errors import UsageError
from ._outbox import Outbox
from ._records import SCHEMA_VERSION, DeadLetter, Record
from ._state import State

__version__ = "0.1.0"

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
