"""The Chromium engine: Debian's ``/usr/bin/chromium`` driven by Playwright
(Python, sync API) over the Chrome DevTools Protocol, behind the facade in
base.py. Every method delegates to Playwright; the facade only narrows the
API to what both engines offer and normalises console/error records.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Callable

from .base import (CDP, CLOSE_WITH_BEFOREUNLOAD, CLOSE_WITHOUT_BEFOREUNLOAD, CONSOLE, CRASH, INIT_SCRIPT,
                   MULTI_PAGE, OFFLINE, ROUTE, ConsoleMessage, EventSource, PageError)

__all__ = ["ChromiumBrowser", "CHROMIUM", "CHROMIUM_ARGS"]

CHROMIUM = os.environ.get("REVU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class ChromiumRoute:
    def __init__(self, route: Any) -> None:
        self._route = route
        self.request = route.request

    def abort(self, error_code: str | None = None) -> None:
        self._route.abort(error_code) if error_code else self._route.abort()

    def continue_(self) -> None:
        self._route.continue_()


class ChromiumPage(EventSource):
    def __init__(self, context: "ChromiumContext", page: Any) -> None:
        super().__init__()
        self.context = context
        self._page = page
        self.console_messages: list[ConsoleMessage] = []
        self.page_errors: list[PageError] = []
        self._crashed = False
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.on("close", lambda _: self._emit("close", self))
        page.on("crash", lambda _: self._emit("crash", self))

    def _on_console(self, msg: Any) -> None:
        loc = msg.location or {}
        record = ConsoleMessage(type=msg.type, text=msg.text, location=f"{loc.get('url', '')}:{loc.get('lineNumber', '')}")
        self.console_messages.append(record)
        self._emit("console", record)

    def _on_pageerror(self, error: Any) -> None:
        record = PageError(message=str(getattr(error, "message", error)), stack=str(getattr(error, "stack", "") or ""))
        self.page_errors.append(record)
        self._emit("pageerror", record)

    @property
    def url(self) -> str:
        return self._page.url

    def goto(self, url: str, wait_until: str = "load", timeout: float = 60_000) -> None:
        self._page.goto(url, wait_until=wait_until, timeout=timeout)

    def reload(self, wait_until: str = "load", timeout: float = 60_000) -> None:
        self._page.reload(wait_until=wait_until, timeout=timeout)

    def evaluate(self, source: str, arg: Any = None) -> Any:
        return self._page.evaluate(source, arg)

    def wait_for_function(self, source: str, arg: Any = None, timeout: float = 30_000,
                          polling: Any = "raf") -> Any:
        return self._page.wait_for_function(source, arg=arg, timeout=timeout, polling=polling).json_value()

    def close(self, run_before_unload: bool = False) -> None:
        self._page.close(run_before_unload=run_before_unload)

    def is_closed(self) -> bool:
        return self._page.is_closed()

    def wait_for_timeout(self, timeout_ms: float) -> None:
        self._page.wait_for_timeout(timeout_ms)

    @property
    def workers(self) -> list[Any]:
        """The page's dedicated Workers (Playwright Worker objects)."""
        return list(self._page.workers)

    def crash(self) -> None:
        """Kill this page's renderer the way a crash would (CDP Page.crash): no
        pagehide, no beacon. Sent through the browser's own CDP session with the
        (deprecated) Target.sendMessageToTarget, because a page session's
        send("Page.crash") never gets its answer and blocks Playwright."""
        marker = f"crash-{uuid.uuid4()}"
        self._page.evaluate("(t) => { document.title = t; }", marker)
        session = self.context.browser._browser.new_browser_cdp_session()
        target = next(t for t in session.send("Target.getTargets")["targetInfos"] if t.get("title") == marker)
        attached = session.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": False})
        crashed: list[bool] = []
        self._page.on("crash", lambda _: crashed.append(True))
        session.send("Target.sendMessageToTarget", {"sessionId": attached["sessionId"],
                                                   "message": json.dumps({"id": 1, "method": "Page.crash"})})
        deadline = time.time() + 10
        while not crashed and time.time() < deadline:
            session.send("Target.getTargets")  # a round trip lets Playwright deliver the "crash" event
            time.sleep(0.05)
        session.detach()
        if not crashed:
            raise RuntimeError("the renderer did not crash")
        self._crashed = True

    def cdp(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one Chrome DevTools Protocol command to this page's target."""
        return self._page.context.new_cdp_session(self._page).send(method, params or {})


class ChromiumContext(EventSource):
    def __init__(self, browser: "ChromiumBrowser", context: Any) -> None:
        super().__init__()
        self.browser = browser
        self._context = context
        self._pages: dict[Any, ChromiumPage] = {}
        self._routes: dict[str, Callable[..., Any]] = {}
        context.on("page", self._on_page)
        context.on("response", lambda r: self._emit("response", r))  # Playwright Response: url, status, headers

    def _on_page(self, page: Any) -> None:  # every new tab: ours and the ones the page opens
        wrapped = self._wrap(page)
        self._emit("page", wrapped)

    def _wrap(self, page: Any) -> ChromiumPage:
        if page not in self._pages:
            self._pages[page] = ChromiumPage(self, page)
        return self._pages[page]

    @property
    def pages(self) -> list[ChromiumPage]:
        return [self._wrap(p) for p in self._context.pages]

    def new_page(self) -> ChromiumPage:
        return self._wrap(self._context.new_page())

    def add_init_script(self, script: str) -> None:
        self._context.add_init_script(script)

    def set_offline(self, offline: bool) -> None:
        self._context.set_offline(offline)

    def route(self, url: str, handler: Callable[[Any], None]) -> None:
        def playwright_handler(route: Any) -> None:
            handler(ChromiumRoute(route))
        self._routes[url] = playwright_handler
        self._context.route(url, playwright_handler)

    def unroute(self, url: str) -> None:
        self._context.unroute(url, self._routes.pop(url, None))

    def close(self) -> None:
        self._context.close()


class ChromiumBrowser:
    name = "chromium"
    capabilities = frozenset({CRASH, OFFLINE, ROUTE, INIT_SCRIPT, CLOSE_WITH_BEFOREUNLOAD,
                              CLOSE_WITHOUT_BEFOREUNLOAD, MULTI_PAGE, CONSOLE, CDP})
    limits: dict[str, str] = {}

    def __init__(self, executable: str = CHROMIUM) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception:
            self._pw.stop()
            raise
        self.version = self._browser.version

    def new_context(self) -> ChromiumContext:
        return ChromiumContext(self, self._browser.new_context())

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._pw.stop()
