"""What both engine facades share: capabilities, console/error records,
the evaluate() heuristic and the polling used by wait_for_function().

The facade is the subset of Playwright's sync API the e2e tests use, so a
test body reads the same in both engines:

    browser.name, browser.version, browser.capabilities, browser.new_context()
    context.new_page(), context.pages, context.add_init_script(js),
    context.set_offline(bool), context.route(url, handler), context.unroute(url),
    context.on("page", fn), context.close()
    page.goto(url, wait_until=), page.reload(wait_until=), page.url,
    page.evaluate(js, arg), page.wait_for_function(js, arg, timeout=, polling=),
    page.close(run_before_unload=), page.is_closed(), page.crash(),
    page.on("console" | "pageerror" | "close" | "crash", fn),
    page.console_messages, page.page_errors
    route.request.url, route.abort(), route.continue_()

Each engine lists its capabilities (``browser.capabilities``) and, for what
it lacks, why (``browser.limits``); every e2e test today needs none that either
engine lacks, so nothing is skipped for want of one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable


__all__ = [
    "CRASH", "OFFLINE", "ROUTE", "INIT_SCRIPT", "CLOSE_WITH_BEFOREUNLOAD", "CLOSE_WITHOUT_BEFOREUNLOAD",
    "MULTI_PAGE", "CONSOLE", "CDP", "ALL_CAPABILITIES",
    "ConsoleMessage", "PageError", "EventSource", "is_function_source", "poll",
]

# Capabilities (names in browser.capabilities / browser.limits and in docs/browsers.md).
CRASH = "crash"                                  # page.crash(): its renderer / content process dies
OFFLINE = "offline"                              # context.set_offline(): network off + offline/online events
ROUTE = "route"                                  # context.route(): abort or continue matching requests
INIT_SCRIPT = "init_script"                      # context.add_init_script(): runs before page scripts
CLOSE_WITH_BEFOREUNLOAD = "close_with_beforeunload"        # page.close(run_before_unload=True)
CLOSE_WITHOUT_BEFOREUNLOAD = "close_without_beforeunload"  # page.close(run_before_unload=False)
MULTI_PAGE = "multi_page"                        # several tabs of one origin in one context (shared storage)
CONSOLE = "console"                              # page.on("console") / page.on("pageerror")
CDP = "cdp"                                      # page.cdp(method, params): Chrome DevTools Protocol

ALL_CAPABILITIES = (CRASH, OFFLINE, ROUTE, INIT_SCRIPT, CLOSE_WITH_BEFOREUNLOAD,
                    CLOSE_WITHOUT_BEFOREUNLOAD, MULTI_PAGE, CONSOLE, CDP)


@dataclass
class ConsoleMessage:
    """One console API call: ``type`` as Playwright names it (log, debug, info,
    warning, error, trace ...), ``text`` the arguments joined by spaces,
    ``args`` the arguments as Python values where they serialise."""

    type: str
    text: str
    args: list[Any] = field(default_factory=list)
    location: str = ""


@dataclass
class PageError:
    """An uncaught exception or unhandled promise rejection in the page."""

    message: str
    stack: str = ""


class EventSource:
    """``on(name, fn)`` / ``off(name, fn)`` / ``_emit(name, value)``."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[Any], None]]] = {}

    def on(self, name: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        self._listeners.setdefault(name, []).append(handler)
        return lambda: self.off(name, handler)

    def off(self, name: str, handler: Callable[[Any], None]) -> None:
        if handler in self._listeners.get(name, []):
            self._listeners[name].remove(handler)

    def _emit(self, name: str, value: Any) -> None:
        for handler in list(self._listeners.get(name, [])):
            handler(value)


_FUNCTION = re.compile(r"^(?:\s+|//[^\n]*\n|/\*.*?\*/)*(async\s+)?(function\b|\([^()]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)", re.S)


def is_function_source(source: str) -> bool:
    """Playwright's rule: a string that is a function is called with the
    argument; anything else is evaluated as an expression. Leading comments
    are skipped (tests/e2e/hostile.js starts with one)."""
    return bool(_FUNCTION.match(source))


def poll(check: Callable[[], Any], timeout_ms: float, interval_s: float, what: str,
         transient: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``check`` until it returns a truthy value; errors of the
    ``transient`` types (a navigation in progress) count as "not yet"."""
    deadline = time.monotonic() + timeout_ms / 1000
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except transient as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            hint = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"wait_for_function timed out after {timeout_ms:.0f} ms: {what}{hint}")
        time.sleep(interval_s)
