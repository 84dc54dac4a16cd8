// The only file that reads the clock, makes ids and jitter, or sets timers.
// (Key material and IVs are pii.js's, next to the crypto that uses them.)

/** @returns {number} ms since the epoch */
export function nowMs() {
  return Date.now();
}

/** @returns {number} jitter in [0, 1) for the core's backoff */
export function jitter() {
  return Math.random();
}

/**
 * A random UUID v4. `crypto.randomUUID` needs a secure context; pages served
 * over plain http fall back to `crypto.getRandomValues`, which does not.
 * @returns {string}
 */
export function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") {
    try {
      return c.randomUUID();
    } catch (_) {
      // insecure context: fall through
    }
  }
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Keyed one-shot timers: setting a key replaces its previous timer. */
export class Timers {
  constructor() {
    /** @type {Map<string, ReturnType<typeof setTimeout>>} */
    this.handles = new Map();
  }

  /**
   * @param {string} key
   * @param {number} atMs   absolute deadline (ms epoch)
   * @param {() => void} fn
   * @returns {void}
   */
  set(key, atMs, fn) {
    this.cancel(key);
    const handle = setTimeout(() => {
      this.handles.delete(key);
      fn();
    }, Math.max(0, atMs - nowMs()));
    this.handles.set(key, handle);
  }

  /**
   * @param {string} key
   * @returns {void}
   */
  cancel(key) {
    const handle = this.handles.get(key);
    if (handle !== undefined) clearTimeout(handle);
    this.handles.delete(key);
  }
}

/**
 * Run `fn` soon, after the current task (a macrotask, so that a burst of
 * record() calls lands in one hand-over to the core).
 * @param {() => void} fn
 * @returns {void}
 */
export function soon(fn) {
  setTimeout(fn, 0);
}
