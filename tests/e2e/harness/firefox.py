"""The Firefox engine: Debian's ``firefox-esr`` driven over WebDriver BiDi
(its Remote Agent) by the small client in bidi.py, behind the facade in
base.py. Playwright cannot drive a stock Firefox; this speaks the same W3C
protocol puppeteer-core uses for Firefox, without a Node process between.

Mapping (facade -> BiDi):

- browser: one ``firefox-esr --headless`` per test session (firefox_process.py),
  one BiDi session, ``session.subscribe`` to log and browsingContext events.
- context: ``browser.createUserContext`` (a container: its own cookies,
  localStorage, IndexedDB, cache), removed with ``browser.removeUserContext``.
- new_page: ``browsingContext.create {type: "window", userContext}``. A
  window, not a tab: in one window only the selected tab is visible, so a
  second tab would make the first one fire ``visibilitychange -> hidden``
  (and revu beacon). Each page in its own window is visible, as every
  Playwright page is in headless Chromium.
- goto / reload: ``browsingContext.navigate`` / ``reload`` with ``wait``
  none (commit) / interactive (domcontentloaded) / complete (load).
- evaluate: ``script.callFunction`` (a function source, called with the
  argument) or ``script.evaluate`` (an expression), ``awaitPromise: true``.
- wait_for_function: evaluate polled from Python every 50 ms (default), so
  it survives navigations.
- close: ``browsingContext.close {promptUnload}``; beforeunload prompts are
  accepted (``unhandledPromptBehavior.beforeUnload = "accept"``).
- add_init_script: ``script.addPreloadScript {userContexts: [ctx]}``.
- set_offline: ``emulation.setNetworkConditions {type: "offline"}`` for the
  user context.
- route: ``network.addIntercept`` on ``beforeRequestSent`` +
  ``network.failRequest`` / ``network.continueRequest``.
- console / pageerror: ``log.entryAdded`` (type ``console`` / ``javascript``).
- crash: the page's content process is killed (SIGKILL). Its pid comes from
  the parent process (``browsingContext.currentWindowGlobal.osPid``), read by
  a script evaluated in the browser's chrome window, which needs
  ``--remote-allow-system-access``. Firefox gives every page its own content
  process here (``dom.ipc.processCount.webIsolated``), and crash() refuses
  when another open page shares the process.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import threading
import time
from typing import Any, Callable

from .base import (CLOSE_WITH_BEFOREUNLOAD, CLOSE_WITHOUT_BEFOREUNLOAD, CONSOLE, CRASH, INIT_SCRIPT,
                   MULTI_PAGE, OFFLINE, ROUTE, ConsoleMessage, EventSource, PageError,
                   is_function_source, poll)
from .bidi import BiDiConnection, BiDiError, JavaScriptError, from_remote_value, to_local_value
from .firefox_process import FIREFOX, FirefoxProcess

__all__ = ["FirefoxBrowser"]

_WAIT = {"commit": "none", "domcontentloaded": "interactive", "load": "complete", "networkidle": "complete"}
_CONSOLE_TYPES = {"warn": "warning", "group": "startGroup", "groupCollapsed": "startGroupCollapsed",
                  "groupEnd": "endGroup"}
_EVAL_TIMEOUT_S = 300.0  # Playwright's evaluate has none; a hung page still ends the test

# Each page gets its own content process, so crash() kills only that page.
_PROCESS_PREFS = {"dom.ipc.processCount.webIsolated": 64, "dom.ipc.processCount": 64}


def _error_text(result: dict[str, Any]) -> str:
    details = result.get("exceptionDetails", {})
    text = details.get("text") or "script threw"
    frames = details.get("stackTrace", {}).get("callFrames", [])
    where = "".join(f"\n    at {f.get('functionName') or '<anonymous>'} ({f.get('url')}:{f.get('lineNumber')})"
                    for f in frames[:5])
    return text + where


class FirefoxRoute:
    class _Request:
        def __init__(self, request: dict[str, Any]) -> None:
            self.url = request.get("url", "")
            self.method = request.get("method", "")

    def __init__(self, conn: BiDiConnection, params: dict[str, Any]) -> None:
        self._conn = conn
        self._id = params["request"]["request"]
        self.request = self._Request(params["request"])
        self.handled = False

    def abort(self, error_code: str | None = None) -> None:
        """Fail the request with a network error (BiDi has one kind only:
        ``error_code``, Playwright's reason, is accepted and ignored)."""
        self.handled = True
        self._conn.send("network.failRequest", {"request": self._id})

    def continue_(self) -> None:
        self.handled = True
        self._conn.send("network.continueRequest", {"request": self._id})


class FirefoxResponse:
    """What ``network.responseCompleted`` tells: url, status, headers (lower-case names)."""

    def __init__(self, params: dict[str, Any]) -> None:
        response = params["response"]
        self.url = params["request"]["url"]
        self.status = response.get("status")
        self.headers = {h["name"].lower(): h["value"].get("value", "") for h in response.get("headers", [])}


class FirefoxPage(EventSource):
    def __init__(self, context: "FirefoxContext", context_id: str) -> None:
        super().__init__()
        self.context = context
        self.id = context_id
        self._conn = context.browser._conn
        self.console_messages: list[ConsoleMessage] = []
        self.page_errors: list[PageError] = []
        self._closed = threading.Event()
        self._crashed = False

    # --------------------------------------------------------------- events

    def _on_log(self, entry: dict[str, Any]) -> None:
        if entry.get("type") == "javascript":
            text = entry.get("text", "")
            name, sep, rest = text.partition(": ")
            message = rest if sep and name.isidentifier() else text
            frames = entry.get("stackTrace", {}).get("callFrames", [])
            stack = "\n".join(f"{f.get('functionName') or '<anonymous>'}@{f.get('url')}:{f.get('lineNumber')}"
                              for f in frames)
            record = PageError(message=message, stack=stack)
            self.page_errors.append(record)
            self._emit("pageerror", record)
            return
        method = entry.get("method", "log")
        args = []
        for arg in entry.get("args", []):
            try:
                args.append(from_remote_value(arg))
            except (KeyError, TypeError, ValueError):
                args.append(None)
        frames = entry.get("stackTrace", {}).get("callFrames", [])
        location = f"{frames[0].get('url')}:{frames[0].get('lineNumber')}" if frames else ""
        record = ConsoleMessage(type=_CONSOLE_TYPES.get(method, method), text=entry.get("text", ""),
                                args=args, location=location)
        self.console_messages.append(record)
        self._emit("console", record)

    def _on_destroyed(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._emit("close", self)

    # ----------------------------------------------------------- navigation

    @property
    def url(self) -> str:
        tree = self._conn.command("browsingContext.getTree", {"root": self.id, "maxDepth": 0})
        return tree["contexts"][0]["url"]

    def goto(self, url: str, wait_until: str = "load", timeout: float = 60_000) -> None:
        self._conn.command("browsingContext.navigate", {"context": self.id, "url": url, "wait": _WAIT[wait_until]},
                           timeout_s=timeout / 1000)

    def reload(self, wait_until: str = "load", timeout: float = 60_000) -> None:
        self._conn.command("browsingContext.reload", {"context": self.id, "wait": _WAIT[wait_until]},
                           timeout_s=timeout / 1000)

    # ------------------------------------------------------------ scripting

    def evaluate(self, source: str, arg: Any = None, timeout: float | None = None) -> Any:
        target = {"context": self.id}
        common = {"target": target, "awaitPromise": True, "resultOwnership": "none",
                  "serializationOptions": {"maxDomDepth": 0}}
        timeout_s = _EVAL_TIMEOUT_S if timeout is None else timeout / 1000
        if is_function_source(source):
            result = self._conn.command("script.callFunction", {
                "functionDeclaration": source, "arguments": [to_local_value(arg)], **common}, timeout_s=timeout_s)
        else:
            result = self._conn.command("script.evaluate", {"expression": source, **common}, timeout_s=timeout_s)
        if result.get("type") == "exception":
            raise JavaScriptError(_error_text(result))
        return from_remote_value(result["result"])

    def wait_for_function(self, source: str, arg: Any = None, timeout: float = 30_000,
                          polling: Any = "raf") -> Any:
        interval_s = polling / 1000 if isinstance(polling, (int, float)) else 0.05
        # BiDi errors (the document is being replaced) mean "not yet"; a script
        # that throws fails the wait, as in Playwright.
        return poll(lambda: self.evaluate(source, arg, timeout=timeout), timeout, interval_s, source,
                    transient=(BiDiError,))

    # ------------------------------------------------------------ lifecycle

    def close(self, run_before_unload: bool = False) -> None:
        if self._closed.is_set():
            return
        try:
            self._conn.command("browsingContext.close", {"context": self.id, "promptUnload": run_before_unload})
        except BiDiError as exc:
            if exc.error != "no such frame":
                raise
        self._on_destroyed()

    def is_closed(self) -> bool:
        return self._closed.is_set()

    def wait_for_timeout(self, timeout_ms: float) -> None:
        time.sleep(timeout_ms / 1000)

    @property
    def workers(self) -> list[dict[str, Any]]:
        """The page's dedicated Workers, as BiDi realms (``script.getRealms``)."""
        realms = self._conn.command("script.getRealms", {})["realms"]
        mine = {r["realm"] for r in realms if r.get("type") == "window" and r.get("context") == self.id}
        return [r for r in realms if r.get("type") == "dedicated-worker" and mine & set(r.get("owners", []))]

    def process_id(self) -> int:
        """The pid of the content process that runs this page's document."""
        pid = self.context.browser._chrome_call("""(id) => {
          const {NavigableManager} = ChromeUtils.importESModule(
            "chrome://remote/content/shared/NavigableManager.sys.mjs");
          const bc = NavigableManager.getBrowsingContextById(id);
          return bc && bc.currentWindowGlobal ? bc.currentWindowGlobal.osPid : null;
        }""", self.id)
        if not pid or pid == self.context.browser._process.proc.pid:
            raise RuntimeError(f"page {self.id} has no content process (url {self.url})")
        return int(pid)

    def crash(self) -> None:
        """Kill this page's content process (the tab shows Firefox's crash page)."""
        pid = self.process_id()
        sharing = [p for p in self.context.browser._open_pages() if p is not self and p._pid_or_none() == pid]
        if sharing:
            raise RuntimeError(f"content process {pid} also hosts {len(sharing)} other page(s); "
                               "killing it would crash them too")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.02)
        self._crashed = True
        self._emit("crash", self)

    def _pid_or_none(self) -> int | None:
        try:
            return self.process_id()
        except (RuntimeError, BiDiError):
            return None


class FirefoxContext(EventSource):
    def __init__(self, browser: "FirefoxBrowser", user_context: str) -> None:
        super().__init__()
        self.browser = browser
        self.id = user_context
        self._conn = browser._conn
        self._pages: dict[str, FirefoxPage] = {}
        self._lock = threading.Lock()
        self._preload_scripts: list[str] = []
        self._routes: dict[str, tuple[str, Callable[[Any], None]]] = {}  # url -> (intercept, handler)
        self._closed = False

    def on(self, name: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        if name == "response":
            self.browser._watch_responses()
        return super().on(name, handler)

    def _page_for(self, context_id: str) -> tuple[FirefoxPage, bool]:
        with self._lock:
            page = self._pages.get(context_id)
            if page is not None:
                return page, False
            page = self._pages[context_id] = FirefoxPage(self, context_id)
        return page, True

    @property
    def pages(self) -> list[FirefoxPage]:
        return [p for p in list(self._pages.values()) if not p.is_closed()]

    def new_page(self) -> FirefoxPage:
        created = self._conn.command("browsingContext.create", {"type": "window", "userContext": self.id})
        page, new = self._page_for(created["context"])
        if new:  # the contextCreated event has not arrived yet
            self._emit("page", page)
        return page

    def add_init_script(self, script: str) -> None:
        added = self._conn.command("script.addPreloadScript", {
            "functionDeclaration": "() => {\n" + script + "\n}", "userContexts": [self.id]})
        self._preload_scripts.append(added["script"])

    def set_offline(self, offline: bool) -> None:
        self._conn.command("emulation.setNetworkConditions", {
            "networkConditions": {"type": "offline"} if offline else None, "userContexts": [self.id]})

    def route(self, url: str, handler: Callable[[Any], None]) -> None:
        """Intercept requests whose URL equals ``url`` (or matches it as a
        glob when it contains ``*``); ``handler(route)`` must call
        ``route.abort()`` or ``route.continue_()`` (continue by default)."""
        if url in self._routes:
            self.unroute(url)
        params: dict[str, Any] = {"phases": ["beforeRequestSent"]}
        if "*" not in url:
            params["urlPatterns"] = [{"type": "string", "pattern": url}]
        intercept = self._conn.command("network.addIntercept", params)["intercept"]
        self._routes[url] = (intercept, handler)
        self.browser._watch_network(+1)

    def unroute(self, url: str) -> None:
        intercept, _ = self._routes.pop(url)
        self._conn.command("network.removeIntercept", {"intercept": intercept})
        self.browser._watch_network(-1)

    def _on_blocked(self, params: dict[str, Any]) -> bool:
        """Handle a request blocked by one of our intercepts; True if it was ours."""
        for url, (intercept, handler) in list(self._routes.items()):
            if intercept not in params.get("intercepts", []):
                continue
            route = FirefoxRoute(self._conn, params)
            if "*" in url and not fnmatch.fnmatchcase(route.request.url, url):
                route.continue_()
                return True
            try:
                handler(route)
            finally:
                if not route.handled:
                    route.continue_()
            return True
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for url in list(self._routes):
            self.unroute(url)
        for script in self._preload_scripts:
            self._conn.command("script.removePreloadScript", {"script": script})
        self._conn.command("browser.removeUserContext", {"userContext": self.id})
        for page in list(self._pages.values()):
            page._on_destroyed()
        self.browser._contexts.pop(self.id, None)


class FirefoxBrowser:
    name = "firefox"
    capabilities = frozenset({CRASH, OFFLINE, ROUTE, INIT_SCRIPT, CLOSE_WITH_BEFOREUNLOAD,
                              CLOSE_WITHOUT_BEFOREUNLOAD, MULTI_PAGE, CONSOLE})
    limits = {"cdp": "Firefox has no Chrome DevTools Protocol (removed in Firefox 129); "
                     "the harness speaks WebDriver BiDi to it"}

    def __init__(self, executable: str = FIREFOX) -> None:
        self._process = FirefoxProcess(executable, extra_prefs=_PROCESS_PREFS)
        try:
            self._conn = BiDiConnection(self._process.ws_url + "/session")
            session = self._conn.command("session.new", {"capabilities": {"alwaysMatch": {
                "acceptInsecureCerts": True,
                "unhandledPromptBehavior": {"default": "ignore", "beforeUnload": "accept"}}}})
        except Exception:
            self._process.close()
            raise
        self.version = session["capabilities"]["browserVersion"]
        self._contexts: dict[str, FirefoxContext] = {}
        self._network_watchers = 0
        self._network_subscription: str | None = None
        self._chrome_context: str | None = None
        self._conn.on("log.entryAdded", self._on_log)
        self._conn.on("browsingContext.contextCreated", self._on_created)
        self._conn.on("browsingContext.contextDestroyed", self._on_destroyed)
        self._conn.on("network.beforeRequestSent", self._on_request)
        self._conn.on("network.responseCompleted", self._on_response)
        self._responses_watched = False
        self._conn.command("session.subscribe", {"events": [
            "log.entryAdded", "browsingContext.contextCreated", "browsingContext.contextDestroyed"]})

    @property
    def stray_requests(self) -> list[str]:
        """Background requests Firefox tried to send off the machine (see firefox_process.py)."""
        return self._process.stray_requests

    # ------------------------------------------------------------ contexts

    def new_context(self) -> FirefoxContext:
        user_context = self._conn.command("browser.createUserContext", {})["userContext"]
        context = self._contexts[user_context] = FirefoxContext(self, user_context)
        return context

    def _page(self, context_id: str | None) -> FirefoxPage | None:
        for context in list(self._contexts.values()):
            page = context._pages.get(context_id or "")
            if page is not None:
                return page
        return None

    def _open_pages(self) -> list[FirefoxPage]:
        return [p for c in list(self._contexts.values()) for p in c.pages]

    # -------------------------------------------------------------- events

    def _on_log(self, entry: dict[str, Any]) -> None:
        page = self._page(entry.get("source", {}).get("context"))
        if page is not None:
            page._on_log(entry)

    def _on_created(self, info: dict[str, Any]) -> None:
        if info.get("parent"):
            return
        context = self._contexts.get(info.get("userContext", ""))
        if context is not None:
            page, new = context._page_for(info["context"])
            if new:
                context._emit("page", page)

    def _on_destroyed(self, info: dict[str, Any]) -> None:
        page = self._page(info.get("context"))
        if page is not None:
            page._on_destroyed()

    def _on_request(self, params: dict[str, Any]) -> None:
        if not params.get("isBlocked"):
            return
        for context in list(self._contexts.values()):
            if context._on_blocked(params):
                return
        self._conn.send("network.continueRequest", {"request": params["request"]["request"]})

    def _on_response(self, params: dict[str, Any]) -> None:
        # Requests made by a page's Workers carry the page's context id.
        page = self._page(params.get("context"))
        if page is not None:
            page.context._emit("response", FirefoxResponse(params))

    def _watch_responses(self) -> None:
        if not self._responses_watched:
            self._responses_watched = True
            self._conn.command("session.subscribe", {"events": ["network.responseCompleted"]})

    def _watch_network(self, delta: int) -> None:
        self._network_watchers += delta
        if self._network_watchers > 0 and self._network_subscription is None:
            self._network_subscription = self._conn.command(
                "session.subscribe", {"events": ["network.beforeRequestSent"]})["subscription"]
        elif self._network_watchers == 0 and self._network_subscription is not None:
            self._conn.command("session.unsubscribe", {"subscriptions": [self._network_subscription]})
            self._network_subscription = None

    # ------------------------------------------------------- chrome scope

    def _chrome_call(self, function: str, *args: Any) -> Any:
        """Call ``function`` in the browser window's chrome (privileged) scope."""
        if self._chrome_context is None:
            tree = self._conn.command("browsingContext.getTree", {"moz:scope": "chrome", "maxDepth": 0})
            self._chrome_context = next(c["context"] for c in tree["contexts"]
                                        if c["url"] == "chrome://browser/content/browser.xhtml")
        result = self._conn.command("script.callFunction", {
            "functionDeclaration": function, "arguments": [to_local_value(a) for a in args],
            "target": {"context": self._chrome_context}, "awaitPromise": True, "resultOwnership": "none"})
        if result.get("type") == "exception":
            raise JavaScriptError(_error_text(result))
        return from_remote_value(result["result"])

    def close(self) -> None:
        try:
            if not self._conn.closed:
                self._conn.command("browser.close", {}, timeout_s=20)
        except (BiDiError, TimeoutError):
            pass
        finally:
            self._conn.close()
            self._process.close()
