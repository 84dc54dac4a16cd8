// The only file that calls fetch.

/**
 * @typedef {object} SendOutcome
 * @property {boolean} ok
 * @property {number|null} status     null: network error or timeout
 * @property {string} [error]         "network_error" | "timeout"
 * @property {string|null} [retryAfter]
 * @property {string} [replyText]    the body of a 2xx (at most MAX_REPLY_CHARS; the core parses it)
 */

/** A longer reply is not passed on (the core would ignore it anyway). */
export const MAX_REPLY_CHARS = 1_000_000;

/**
 * Make a request with `keepalive` (so it survives the page going away) and an
 * abort after `timeoutMs`. Never rejects. An empty body is sent as none.
 *
 * Keepalive bodies share a 64 KiB in-flight budget per page
 * (https://fetch.spec.whatwg.org/#http-network-or-cache-fetch); the core only
 * asks for keepalive on bodies within it.
 * @param {{url: string, method: string, headers: Record<string, string>, body: string|Uint8Array,
 *          keepalive: boolean, timeoutMs: number}} req  a Uint8Array body is already encoded
 *   (its Content-Encoding header is set)
 * @returns {Promise<SendOutcome>}
 */
export async function sendRequest({ url, method, headers, body, keepalive, timeoutMs }) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  try {
    const res = await fetch(url, {
      method,
      body: body === "" ? undefined : body,
      headers,
      keepalive,
      credentials: "omit",
      mode: "cors",
      signal: controller.signal,
    });
    const text = await res.text();
    if (!res.ok) return { ok: false, status: res.status, retryAfter: res.headers.get("Retry-After") };
    return { ok: true, status: res.status, replyText: text.length <= MAX_REPLY_CHARS ? text : "" };
  } catch (_) {
    return { ok: false, status: null, error: timedOut ? "timeout" : "network_error" };
  } finally {
    clearTimeout(timer);
  }
}
