"""Service settings: every limit and default in one place (docs/ingest.md
lists them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._wire import DEFAULT_MAX_BATCH_EVENTS, DEFAULT_MAX_BODY_BYTES

DEFAULT_PORT = 8787
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PREFLIGHT_MAX_AGE_S = 600
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Settings:
    """What ``revu-ingest serve`` was asked to do.

    ``allowed_origins`` empty means any page origin (echoed, with
    credentials); ``api_keys`` empty means any non-empty key is accepted.
    """

    db_url: str = "sqlite:///revu-ingest.sqlite3"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    api_keys: frozenset[str] = field(default_factory=frozenset)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    preflight_max_age_s: int = DEFAULT_PREFLIGHT_MAX_AGE_S
    graceful_timeout_s: float = DEFAULT_GRACEFUL_TIMEOUT_S
    chat: bool = True
    pool_min: int | None = None
    pool_max: int | None = None
    group_writes: int | None = None
    access_log: bool = True
    test_faults: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")
        if self.max_batch_events < 1:
            raise ValueError("max_batch_events must be >= 1")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if any(not k for k in self.api_keys):
            raise ValueError("API keys must be non-empty")
