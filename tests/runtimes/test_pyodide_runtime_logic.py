"""revu.runtimes.pyodide's logic on CPython: the page runtime with its
memory store and a fetch that really reaches the reference server (through
urllib on a thread). The same module in real Pyodide: tests/pyodide/test_page_runtime.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from revu.runtimes import pyodide as page


class _Reply:
    def __init__(self, status: int, text: str, headers: dict[str, str]) -> None:
        self.status = status
        self._text = text
        self.headers = {k.lower(): v for k, v in headers.items()}

    async def string(self) -> str:
        return self._text


async def _fetch(url: str, *, method: str, headers: dict, body, keepalive: bool):
    """``pyodide.http.pyfetch``'s contract: a reply for any HTTP status, OSError for a network error."""
    data = body.encode() if isinstance(body, str) else bytes(body)

    def call():
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return _Reply(r.status, r.read().decode(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return _Reply(e.code, e.read().decode(), dict(e.headers))
        except urllib.error.URLError as e:
            raise OSError(str(e)) from None

    return await asyncio.to_thread(call)


def test_page_runtime_delivers_and_survives_a_reload(ingest):
    store = page.MemoryStore()

    async def first_page():
        ingest.set_faults({"offline": True})
        c = page.Client("test-key", host=ingest.url, store=store, fetch=_fetch)
        ids = [c.record("page.event", {"i": i}) for i in range(25)]
        assert len(store.get_all("revu-py:q:")) == 25  # stored when record() returned
        assert await c.flush(5) is False
        c.close()  # the page goes away with everything still stored
        return ids

    async def second_page():
        ingest.set_faults({"offline": False})
        c = page.Client("test-key", host=ingest.url, store=store, fetch=_fetch)
        assert c.status()["queued"] == 25
        assert await c.flush(10) is True
        st = c.status()
        c.close()
        return st

    ids = asyncio.run(first_page())
    st = asyncio.run(second_page())
    state = ingest.state()
    assert {e["event_id"] for e in state["events"]} == set(ids)
    assert state["duplicates"] == 0 and st["acked"] == 25 and store.get_all("revu-py:q:") == []


def test_page_runtime_bad_input(ingest):
    async def run():
        c = page.Client("test-key", host=ingest.url, store=page.MemoryStore(), fetch=_fetch)
        with pytest.raises(page.RecordError) as info:
            c.record("x", {"f": {1, 2}})
        assert info.value.code == "unserialisable"
        good = c.record("ok")
        assert await c.flush(5) is True
        c.close()
        return good

    good = asyncio.run(run())
    assert [e["event_id"] for e in ingest.state()["events"]] == [good]


def test_import_revu_imports_no_runtime():
    """The core alone (what the browser's trimmed stdlib is traced from) imports
    no runtime; ``revu.init`` picks one on first use."""
    code = ("import sys, revu\n"
            "before = sorted(m for m in sys.modules if m.startswith('revu.runtimes') or m in ('sqlite3', 'urllib.request'))\n"
            "revu.init\n"
            "print(json.dumps([before, 'revu.runtimes.cpython' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[], True]
