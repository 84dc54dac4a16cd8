// The only file that calls navigator.sendBeacon.

/**
 * Queue a terminal beacon with an explicit `application/json` Blob, as the
 * product document asks. The result only says whether the browser accepted
 * it into its queue (for example not over the 64 KiB keepalive budget), never
 * whether it arrived: "The sendBeacon() method returns true if the user agent
 * successfully queued the data for transfer" (https://w3c.github.io/beacon/).
 * @param {string} url
 * @param {string} body
 * @returns {boolean}
 */
export function sendBeacon(url, body) {
  const nav = globalThis.navigator;
  if (!nav || typeof nav.sendBeacon !== "function") return false;
  try {
    return nav.sendBeacon(url, new Blob([body], { type: "application/json" }));
  } catch (_) {
    return false;
  }
}
