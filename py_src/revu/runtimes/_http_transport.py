"""HTTP on the standard library (``http.client``): run one ``Send`` command and
report the outcome as the fact the core expects (``SendSucceeded`` /
``SendFailed``).

``http.client`` rather than ``urllib.request.urlopen``, for one reason: the
body must not leave after the sender's claim on its rows has run out (the
owner rule in ``_sqlite_store``). A process stopped while it connects (SIGSTOP,
a paused VM) would otherwise write the request when it resumes, after another
process may have adopted and sent the same rows. So the deadline is checked
between connecting and writing. Proxies (``HTTP(S)_PROXY``) are not used.
"""

from __future__ import annotations

import gzip
import http.client
import random
import ssl
import urllib.parse
from collections.abc import Callable

from .. import _commands as c
from .. import _facts as f

# The reply is untrusted: read at most this much (the core bounds it again).
MAX_REPLY_BYTES = 1_000_000


def post(send: c.Send, now_ms: Callable[[], int], write_by_ms: int | None = None) -> f.Fact:
    """Make the request ``send`` describes; never raises.

    Args:
        send: the core's command (url, method, headers, body, timeout, encoding).
        now_ms: the runtime's clock (the fact's time is when the reply came).
        write_by_ms: if the connection is up only after this time, the body
            is not written (``SendFailed`` with error ``claim_expired``).

    Returns:
        ``SendSucceeded`` for any 2xx (with the reply's text), else
        ``SendFailed`` (``status`` None for a network error or a timeout).
    """
    def failed(status: int | None, error: str, retry_after: str | None = None) -> f.Fact:
        return f.SendFailed(now_ms=now_ms(), batch_id=send.batch_id, status=status, error=error,
                            retry_after=retry_after, jitter=random.random())

    data = send.body.encode("utf-8")
    headers = dict(send.headers)
    if send.encoding == "gzip":
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    url = urllib.parse.urlsplit(send.url)
    timeout_s = send.timeout_ms / 1000
    if url.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "", url.port, timeout=timeout_s, context=ssl.create_default_context())
    elif url.scheme == "http":
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout_s)
    else:
        return failed(None, "bad_url")
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    try:
        conn.connect()
        if write_by_ms is not None and now_ms() > write_by_ms:
            return failed(None, "claim_expired")
        conn.request(send.method, target, body=data, headers=headers)
        reply = conn.getresponse()
        text = reply.read(MAX_REPLY_BYTES + 1).decode("utf-8", "replace")
        if 200 <= reply.status < 300:
            return f.SendSucceeded(now_ms=now_ms(), batch_id=send.batch_id, status=reply.status, reply=text)
        return failed(reply.status, f"http_{reply.status}", reply.getheader("Retry-After"))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return failed(None, "timeout" if "timed out" in str(exc) else "network_error")
    finally:
        conn.close()
