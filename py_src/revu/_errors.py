"""The one exception the core raises: a caller mistake."""


class UsageError(ValueError):
    """The caller passed something the core cannot accept.

    Raised for bad configuration and malformed facts. I/O outcomes (HTTP errors,
    corrupt records, full storage) are never exceptions: they arrive as facts.
    """
