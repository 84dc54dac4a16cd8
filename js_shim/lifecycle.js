// The only file that listens to page-lifecycle and connectivity events
// (visibility, pagehide, online/offline, and the Network Information API).

/**
 * Terminal signals and connectivity as callbacks.
 *
 * `pagehide` covers tab close, navigation and bfcache eviction on desktop;
 * mobile Safari often skips it when the app is backgrounded, where
 * `visibilitychange -> hidden` is the last reliable signal
 * (https://developer.chrome.com/docs/web-platform/page-lifecycle-api). Both
 * are wired; the caller dedupes.
 *
 * Listeners on one target run in registration order
 * (https://dom.spec.whatwg.org/#concept-event-listener-invoke), so the
 * terminal listener is re-added (moved last) when the page has loaded and
 * again when the core is ready: events other code emits on terminal are then
 * already stored when the beacon is built. `visibilitychange` is fired at the
 * document and bubbles, so listening on `window` also runs after every
 * document-level listener.
 */
export class Lifecycle {
  /**
   * @param {{onTerminal: (reason: string) => void, onVisible: () => void,
   *          onOnline: () => void, onOffline: () => void,
   *          onHidden?: (hidden: boolean) => void,
   *          onNetwork?: (network: {saveData: boolean, effectiveType: string|null}) => void}} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.onVisibility = () => {
      const hidden = document.visibilityState === "hidden";
      if (hidden) handlers.onTerminal("visibilitychange");
      else handlers.onVisible();
      if (handlers.onHidden) handlers.onHidden(hidden);
    };
    this.onConnection = () => {
      const network = this.network();
      if (network && handlers.onNetwork) handlers.onNetwork(network);
    };
    this.onPageHide = () => handlers.onTerminal("pagehide");
    this.onPageShow = () => handlers.onVisible();
    this.onOnline = () => handlers.onOnline();
    this.onOffline = () => handlers.onOffline();
  }

  /** @returns {void} */
  install() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    const connection = globalThis.navigator?.connection;
    if (connection && typeof connection.addEventListener === "function") connection.addEventListener("change", this.onConnection);
    window.addEventListener("pageshow", this.onPageShow);
    this.moveTerminalLast();
    if (document.readyState !== "complete") {
      window.addEventListener("load", () => this.moveTerminalLast(), { once: true });
    }
  }

  /** Re-add the terminal listeners so they run after all others. @returns {void} */
  moveTerminalLast() {
    window.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("pagehide", this.onPageHide);
    window.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("pagehide", this.onPageHide);
  }

  /** @returns {boolean} false only when the browser knows it is offline */
  isOnline() {
    return globalThis.navigator?.onLine !== false;
  }

  /** @returns {boolean} */
  isHidden() {
    return typeof document !== "undefined" && document.visibilityState === "hidden";
  }

  /**
   * What the Network Information API says, where the browser has it
   * (Chromium; not Firefox or Safari: https://wicg.github.io/netinfo/).
   * @returns {{saveData: boolean, effectiveType: string|null}|null}
   */
  network() {
    const connection = globalThis.navigator?.connection;
    if (!connection) return null;
    return { saveData: connection.saveData === true, effectiveType: typeof connection.effectiveType === "string" ? connection.effectiveType : null };
  }
}
