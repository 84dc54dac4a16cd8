"""Engine-agnostic browser harness for the e2e tests: one Playwright-like
facade (base.py) over Chromium (Playwright, chromium.py) and Firefox ESR
(WebDriver BiDi, firefox.py). See docs/browsers.md."""

from __future__ import annotations

import os

from .base import ALL_CAPABILITIES, ConsoleMessage, PageError

__all__ = ["ENGINES", "selected_engines", "launch", "ALL_CAPABILITIES", "ConsoleMessage", "PageError"]

ENGINES = ("chromium", "firefox")


def selected_engines() -> list[str]:
    """The engines to run: all of them, or the comma list in REVU_E2E_ENGINES."""
    raw = os.environ.get("REVU_E2E_ENGINES", "").strip()
    if not raw:
        return list(ENGINES)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise ValueError(f"REVU_E2E_ENGINES={raw!r}: unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    return names


def launch(engine: str):
    """Start one browser of ``engine``; the caller closes it."""
    if engine == "chromium":
        from .chromium import ChromiumBrowser
        return ChromiumBrowser()
    if engine == "firefox":
        from .firefox import FirefoxBrowser
        return FirefoxBrowser()
    raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
