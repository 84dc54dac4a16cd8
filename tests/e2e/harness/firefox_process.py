"""Start Debian's Firefox ESR headless with its WebDriver BiDi Remote Agent.

``FirefoxProcess`` makes a fresh profile in a temporary directory, writes a
``user.js`` that stops every background request Firefox would make on its
own (updates, telemetry, Safe Browsing lists, captive-portal and
connectivity checks, Remote Settings, Normandy/Nimbus experiments, add-on
and plugin updates, push, DNS-over-HTTPS, speculative connections ...),
starts ``firefox-esr --headless --remote-debugging-port=0`` and reads the
``WebDriver BiDi listening on ws://...`` line from its stderr.

As a last guard, every request Firefox makes to a host other than
127.0.0.1/localhost goes through an HTTP proxy that is a trap: it answers
nothing and records what was asked (``FirefoxProcess.stray_requests``), so
a missed preference shows up as a test failure (test_engines.py), never as
a request to the internet.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["FirefoxProcess", "FIREFOX", "PREFS"]

FIREFOX = os.environ.get("REVU_FIREFOX", "/usr/bin/firefox-esr")

_OFF = ""  # an empty URL: the feature has nowhere to send

PREFS: dict[str, object] = {
    # Updates of Firefox, add-ons, system add-ons, search engines, plugins (GMP/OpenH264).
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.url": _OFF,
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.systemAddon.update.url": _OFF,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.search.update": False,
    "browser.search.geoip.url": _OFF,
    "media.gmp-manager.url": _OFF,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.chromium-update-url": _OFF,  # Widevine straight from Google's updater
    "media.gmp-widevinecdm.allow-chromium-update": False,
    "media.gmp-widevinecdm.visible": False,
    "media.eme.enabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-widevinecdm.enabled": False,
    # Telemetry, data reporting, crash reports, studies, experiments (Normandy, Nimbus).
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": _OFF,
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "toolkit.telemetry.newProfilePing.enabled": False,
    "toolkit.telemetry.bhrPing.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "browser.crashReports.unsubmittedCheck.enabled": False,
    "browser.tabs.crashReporting.sendReport": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": _OFF,
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "nimbus.profilesdatastoreservice.enabled": False,
    # Remote Settings (blocklists, CRLite, intermediates, experiments, ML models ...).
    "services.settings.server": "data:,#remote-settings-disabled/v1",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    "browser.ml.enable": False,
    "browser.translations.enable": False,
    # Safe Browsing (list updates and hash lookups).
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": _OFF,
    "browser.safebrowsing.provider.google4.gethashURL": _OFF,
    "browser.safebrowsing.provider.google.updateURL": _OFF,
    "browser.safebrowsing.provider.google.gethashURL": _OFF,
    "browser.safebrowsing.provider.mozilla.updateURL": _OFF,
    "browser.safebrowsing.provider.mozilla.gethashURL": _OFF,
    "privacy.trackingprotection.enabled": False,
    # Connectivity probes, captive portal, DNS-over-HTTPS, region lookup, geolocation.
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,
    "network.trr.confirmationNS": "skip",
    "browser.region.network.url": _OFF,
    "browser.region.update.enabled": False,
    "geo.provider.network.url": _OFF,
    # Speculative and prefetch connections; HTTP/3 (the --disable-quic of the Chromium runs).
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.urlbar.speculativeConnect.enabled": False,
    "browser.places.speculativeConnect.enabled": False,
    "network.http.http3.enable": False,
    # New tab page, first-run pages, Pocket, sponsored tiles, accounts, sync, push.
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.topsites": False,
    "browser.newtabpage.activity-stream.feeds.section.topstories": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.newtabpage.activity-stream.showSponsored": False,
    "browser.newtabpage.activity-stream.showSponsoredTopSites": False,
    "browser.topsites.contile.enabled": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": _OFF,
    "browser.aboutwelcome.enabled": False,
    "trailhead.firstrun.branches": "nofirstrun-empty",
    "browser.shell.checkDefaultBrowser": False,
    "browser.uitour.enabled": False,
    "extensions.pocket.enabled": False,
    "identity.fxaccounts.enabled": False,
    "services.sync.engine.addons": False,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": _OFF,
    "browser.discovery.enabled": False,
    "browser.contentblocking.report.lockwise.enabled": False,
    "browser.vpn_promo.enabled": False,
    # Session restore and crash recovery UI would replay old tabs.
    "browser.sessionstore.resume_from_crash": False,
    "browser.sessionstore.max_resumed_crashes": -1,
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.tabs.warnOnClose": False,
    "browser.warnOnQuit": False,
    # Content processes: no slow-script dialog, no pre-launched spare process.
    "dom.max_script_run_time": 0,
    "dom.ipc.processPrelaunch.enabled": False,
    # Last guard: every non-loopback request goes to the trap proxy.
    "network.proxy.type": 1,
    "network.proxy.share_proxy_settings": True,
    "network.proxy.no_proxies_on": "",
    "network.proxy.allow_hijacking_localhost": False,
    "network.proxy.socks_remote_dns": True,
}

_LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class _TrapProxy:
    """A TCP listener that records the first line of every request and closes."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="firefox-trap-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    line = "<no request line>"
                self.requests.append(line)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


def _user_js(prefs: dict[str, object]) -> str:
    def literal(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "".join(f'user_pref("{k}", {literal(v)});\n' for k, v in prefs.items())


class FirefoxProcess:
    """``with FirefoxProcess() as ff: ff.ws_url`` (``ws://127.0.0.1:<port>``)."""

    def __init__(self, executable: str = FIREFOX, extra_prefs: dict[str, object] | None = None,
                 start_timeout_s: float = 60.0) -> None:
        if not Path(executable).is_file():
            raise FileNotFoundError(f"{executable} is missing: run ./dev setup (it installs firefox-esr)")
        self.executable = executable
        self.profile = Path(tempfile.mkdtemp(prefix="revu-firefox-"))
        self._trap = _TrapProxy()
        prefs = dict(PREFS)
        for key in ("http", "ssl"):
            prefs[f"network.proxy.{key}"] = "127.0.0.1"
            prefs[f"network.proxy.{key}_port"] = self._trap.port
        prefs.update(extra_prefs or {})
        (self.profile / "user.js").write_text(_user_js(prefs))
        self.stderr_tail: list[str] = []
        env = dict(os.environ, MOZ_CRASHREPORTER_DISABLE="1",
                   MOZ_DISABLE_AUTO_SAFE_MODE="1",
                   # Release builds ignore services.settings.server unless one of these is set
                   # (services-settings/Utils.sys.mjs); the first also refuses any direct
                   # non-loopback connection (the trap proxy is on loopback, so it still sees them).
                   MOZ_DISABLE_NONLOCAL_CONNECTIONS="1", MOZ_REMOTE_SETTINGS_DEVTOOLS="1")
        env.pop("DISPLAY", None)
        self.proc = subprocess.Popen(
            [executable, "--headless", "--no-remote", "--new-instance",
             "--remote-debugging-port=0", "--remote-allow-system-access",
             "--profile", str(self.profile), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, start_new_session=True, text=True, errors="replace")
        found: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump_stderr, args=(found,), name="firefox-stderr", daemon=True).start()
        try:
            self.ws_url = found.get(timeout=start_timeout_s)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"firefox-esr did not start its Remote Agent within {start_timeout_s} s:\n"
                               + "".join(self.stderr_tail[-30:])) from None
        if not self.ws_url:
            self.close()
            raise RuntimeError("firefox-esr exited before its Remote Agent listened:\n"
                               + "".join(self.stderr_tail[-30:]))

    def _pump_stderr(self, found: queue.Queue[str]) -> None:
        assert self.proc.stderr is not None
        announced = False
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line])[-200:]
            if not announced and (m := _LISTENING.search(line)):
                announced = True
                found.put(m.group(1))
        if not announced:
            found.put("")

    @property
    def stray_requests(self) -> list[str]:
        """Requests Firefox tried to send to a host other than loopback."""
        return list(self._trap.requests)

    def content_processes(self) -> list[int]:
        """Pids of this Firefox's child processes (content, GPU, socket ...)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True, check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._trap.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "FirefoxProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
