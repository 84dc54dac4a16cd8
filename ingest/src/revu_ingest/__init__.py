"""revu-ingest: the ingest service for the revu SDK (docs/ingest.md).

``create_app(settings, storage)`` is the ASGI app; ``make_storage(url)`` gives
SQLite or PostgreSQL storage; ``revu-ingest serve`` runs it under uvicorn.
The test fault layer lives apart, in ``revu_ingest.faults``.
"""

from ._app import create_app
from ._config import Settings
from ._wire import CHAT_MESSAGES_PATH, EVENTS_PATH, MUTATIONS_PATH
from .storage import Storage, StorageError, make_storage

__all__ = [
    "CHAT_MESSAGES_PATH",
    "EVENTS_PATH",
    "MUTATIONS_PATH",
    "Settings",
    "Storage",
    "StorageError",
    "create_app",
    "make_storage",
]
__version__ = "0.1.0"
