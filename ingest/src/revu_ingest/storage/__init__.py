"""Storage backends behind one interface (see ``_base.Storage``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ._base import MutationResult, Storage, StorageError, StoreResult, Totals

__all__ = ["MutationResult", "Storage", "StorageError", "StoreResult", "Totals", "make_storage"]


def make_storage(
    url: str, *, pool_min: int | None = None, pool_max: int | None = None, group_writes: int | None = None
) -> Storage:
    """A storage for ``url`` (not opened yet).

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``sqlite:///:memory:``, or ``postgresql://user:pass@host:port/db``
    (any libpq URL; ``postgres://`` too).

    Raises:
        ValueError: for another scheme or a malformed URL.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from ._sqlite import SqliteStorage

        return SqliteStorage(url)
    if scheme in ("postgresql", "postgres"):
        from ._postgres import DEFAULT_GROUP_WRITES, DEFAULT_POOL_MAX, DEFAULT_POOL_MIN, PostgresStorage

        return PostgresStorage(
            url,
            pool_min=pool_min if pool_min is not None else DEFAULT_POOL_MIN,
            pool_max=pool_max if pool_max is not None else DEFAULT_POOL_MAX,
            group_writes=group_writes if group_writes is not None else DEFAULT_GROUP_WRITES,
        )
    raise ValueError(f"--db must be sqlite:///path or postgresql://...; got scheme {scheme!r}")
