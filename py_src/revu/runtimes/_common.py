"""What both Python runtimes share: the error ``record()`` raises, and the
clock and option-name helpers (runtimes may read the clock; the core may not)."""

from __future__ import annotations

import time

from .._errors import UsageError


class RecordError(UsageError):
    """``record()`` refused its input; nothing was stored.

    Attributes:
        code: ``invalid_event``, ``invalid_properties``, ``invalid_options``,
            ``unserialisable``, ``too_deep``, ``too_many_members``,
            ``too_large`` or ``pii_unsupported``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def now_ms() -> int:
    return int(time.time() * 1000)


def camel(name: str) -> str:
    """``flush_at`` -> ``flushAt`` (the core's options are camelCase)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
