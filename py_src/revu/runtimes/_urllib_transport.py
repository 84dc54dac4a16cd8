"""HTTP on the standard library: run one ``Send`` command, report the outcome
as the fact the core expects (``SendSucceeded`` / ``SendFailed``)."""

from __future__ import annotations

import gzip
import http.client
import random
import urllib.error
import urllib.request

from .. import _commands as c
from .. import _facts as f

# The reply is untrusted: read at most this much (the core bounds it again).
MAX_REPLY_BYTES = 1_000_000


def post(send: c.Send, now_ms: "callable[[], int]") -> f.Fact:  # type: ignore[valid-type]
    """Make the request ``send`` describes; never raises.

    Args:
        send: the core's command (url, method, headers, body, timeout, encoding).
        now_ms: the runtime's clock (the fact's time is when the reply came).

    Returns:
        ``SendSucceeded`` for any 2xx (with the reply's text), else
        ``SendFailed`` (``status`` None for a network error or a timeout).
    """
    data = send.body.encode("utf-8")
    headers = dict(send.headers)
    if send.encoding == "gzip":
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(send.url, data=data, method=send.method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=send.timeout_ms / 1000) as reply:
            text = reply.read(MAX_REPLY_BYTES + 1).decode("utf-8", "replace")
            return f.SendSucceeded(now_ms=now_ms(), batch_id=send.batch_id, status=reply.status, reply=text)
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers is not None else None
        return f.SendFailed(now_ms=now_ms(), batch_id=send.batch_id, status=exc.code, error=f"http_{exc.code}",
                            retry_after=retry_after, jitter=random.random())
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = "timeout" if "timed out" in str(exc) else "network_error"
        return f.SendFailed(now_ms=now_ms(), batch_id=send.batch_id, status=None, error=reason,
                            jitter=random.random())
