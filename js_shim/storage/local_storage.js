// The only file that touches localStorage.
//
// One key per record (`<prefix>:q:<event_id>`), so an append is one setItem of
// a small string whatever the queue depth, and two tabs never overwrite each
// other's records.

/** @typedef {import("../types.js").Store} Store */

/** @implements {Store} */
export class LocalStorageStore {
  /**
   * Opens localStorage and proves a write works.
   * @param {string} prefix
   * @throws {Error} when localStorage is missing, disabled or refuses writes
   */
  constructor(prefix) {
    this.kind = "localStorage";
    this.durable = true;
    this.prefix = prefix;
    this.ls = globalThis.localStorage;
    if (!this.ls) throw new Error("localStorage is not available");
    const probe = `${prefix}:probe`;
    this.ls.setItem(probe, "1");
    this.ls.removeItem(probe);
  }

  /**
   * Everything stored under the prefix, unchecked (the caller checks every value).
   * @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[],
   *   quarantined: {id: string, raw: string}[], rules: unknown, consent: unknown}}
   */
  loadAll() {
    const queued = [];
    const dead = [];
    const quarantined = [];
    const q = `${this.prefix}:q:`;
    const d = `${this.prefix}:d:`;
    const x = `${this.prefix}:x:`;
    const keys = [];
    for (let i = 0; i < this.ls.length; i++) keys.push(this.ls.key(i));
    for (const key of keys) {
      if (key === null) continue;
      if (key.startsWith(q)) queued.push({ id: key.slice(q.length), raw: this.ls.getItem(key) ?? "" });
      else if (key.startsWith(d)) dead.push({ id: key.slice(d.length), raw: this.ls.getItem(key) ?? "" });
      else if (key.startsWith(x)) quarantined.push({ id: key.slice(x.length), raw: this.ls.getItem(key) ?? "" });
    }
    return { queued, dead, quarantined, rules: this.readJson("rules"), consent: this.readJson("consent") };
  }

  /**
   * @param {string} name
   * @returns {unknown} the stored JSON value; null when absent; `{corrupt: text}` when it does not parse
   */
  readJson(name) {
    const text = this.ls.getItem(`${this.prefix}:${name}`);
    if (text === null) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return { corrupt: text.slice(0, 200) }; // reported by the caller, never used
    }
  }

  /** @param {string} id @param {string} raw @returns {void} */
  putRecord(id, raw) {
    this.ls.setItem(`${this.prefix}:q:${id}`, raw);
  }

  /** @param {string[]} ids @returns {void} */
  deleteRecords(ids) {
    for (const id of ids) this.ls.removeItem(`${this.prefix}:q:${id}`);
  }

  /** @param {string} id @param {string} raw @returns {void} */
  putDeadLetter(id, raw) {
    this.ls.setItem(`${this.prefix}:d:${id}`, raw);
  }

  /** @param {string[]} ids @returns {void} */
  deleteDeadLetters(ids) {
    for (const id of ids) this.ls.removeItem(`${this.prefix}:d:${id}`);
  }

  /** @param {string} key @param {string} raw @returns {void} */
  putQuarantine(key, raw) {
    this.ls.setItem(`${this.prefix}:x:${key}`, raw);
  }

  /** @param {string[]} keys @returns {void} */
  deleteQuarantine(keys) {
    for (const key of keys) this.ls.removeItem(`${this.prefix}:x:${key}`);
  }

  /**
   * Changes other tabs make: `fn({area, id, raw})` for each, `area` "q"
   * (queued), "d" (dead letter) or "x" (quarantined), `raw` null when the key
   * was removed. (The `storage` event fires in every other same-origin tab,
   * never in the one that wrote: https://html.spec.whatwg.org/multipage/webstorage.html#the-storageevent-interface)
   * @param {(change: {area: string, id: string, raw: string|null}) => void} fn
   * @returns {void}
   */
  watch(fn) {
    const prefix = `${this.prefix}:`;
    globalThis.addEventListener("storage", (event) => {
      if (event.storageArea !== this.ls || !event.key || !event.key.startsWith(prefix)) return;
      const rest = event.key.slice(prefix.length);
      const area = rest.slice(0, 2);
      if (area === "q:" || area === "d:" || area === "x:") fn({ area: area[0], id: rest.slice(2), raw: event.newValue });
    });
  }

  /** @returns {Record<string, number>} event id -> until when another tab's request may still carry it */
  getInFlight() {
    const value = this.readJson("inflight");
    if (!value || typeof value !== "object" || Array.isArray(value)) return {};
    const out = {};
    for (const [id, until] of Object.entries(value)) if (Number.isSafeInteger(until)) out[id] = until;
    return out;
  }

  /** @param {Record<string, number>} value @returns {void} */
  putInFlight(value) {
    const key = `${this.prefix}:inflight`;
    if (Object.keys(value).length) this.ls.setItem(key, JSON.stringify(value));
    else this.ls.removeItem(key);
  }

  /** @param {object} rules @returns {void} */
  putRules(rules) {
    this.ls.setItem(`${this.prefix}:rules`, JSON.stringify(rules));
  }

  /** @param {unknown} consent @returns {void} */
  putConsent(consent) {
    this.ls.setItem(`${this.prefix}:consent`, JSON.stringify(consent));
  }
}
