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

  /** @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[], rules: object|null, consent: unknown}} */
  loadAll() {
    const queued = [];
    const dead = [];
    const q = `${this.prefix}:q:`;
    const d = `${this.prefix}:d:`;
    for (let i = 0; i < this.ls.length; i++) {
      const key = this.ls.key(i);
      if (key === null) continue;
      if (key.startsWith(q)) queued.push({ id: key.slice(q.length), raw: this.ls.getItem(key) ?? "" });
      else if (key.startsWith(d)) dead.push({ id: key.slice(d.length), raw: this.ls.getItem(key) ?? "" });
    }
    return { queued, dead, rules: this.readJson("rules"), consent: this.readJson("consent") };
  }

  /** @param {string} name @returns {unknown} a stored JSON value, or null when absent or corrupt */
  readJson(name) {
    try {
      return JSON.parse(this.ls.getItem(`${this.prefix}:${name}`) ?? "null");
    } catch (_) {
      return null; // corrupt: the caller falls back to its default
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

  /** @param {object} rules @returns {void} */
  putRules(rules) {
    this.ls.setItem(`${this.prefix}:rules`, JSON.stringify(rules));
  }

  /** @param {unknown} consent @returns {void} */
  putConsent(consent) {
    this.ls.setItem(`${this.prefix}:consent`, JSON.stringify(consent));
  }
}
