/** @typedef {import("../types.js").Store} Store */

/**
 * Storage that lives as long as the page: the fallback when localStorage is
 * unavailable or throws, and the `storage: "memory"` option.
 * @implements {Store}
 */
export class MemoryStore {
  constructor() {
    this.kind = "memory";
    this.durable = false;
    /** @type {Map<string, string>} */
    this.queued = new Map();
    /** @type {Map<string, string>} */
    this.dead = new Map();
    /** @type {Map<string, string>} */
    this.quarantined = new Map();
    this.rules = null;
    this.consent = null;
  }

  /** @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[], quarantined: {id: string, raw: string}[], rules: unknown, consent: unknown}} */
  loadAll() {
    const items = (m) => Array.from(m, ([id, raw]) => ({ id, raw }));
    return { queued: items(this.queued), dead: items(this.dead), quarantined: items(this.quarantined), rules: this.rules, consent: this.consent };
  }

  /** @param {string} id @param {string} raw @returns {void} */
  putRecord(id, raw) {
    this.queued.set(id, raw);
  }

  /** @param {string[]} ids @returns {void} */
  deleteRecords(ids) {
    for (const id of ids) this.queued.delete(id);
  }

  /** @param {string} id @param {string} raw @returns {void} */
  putDeadLetter(id, raw) {
    this.dead.set(id, raw);
  }

  /** @param {string[]} ids @returns {void} */
  deleteDeadLetters(ids) {
    for (const id of ids) this.dead.delete(id);
  }

  /** @param {string} key @param {string} raw @returns {void} */
  putQuarantine(key, raw) {
    this.quarantined.set(key, raw);
  }

  /** @param {string[]} keys @returns {void} */
  deleteQuarantine(keys) {
    for (const key of keys) this.quarantined.delete(key);
  }

  /** Memory is this tab's alone: no other tab changes it. @returns {void} */
  watch() {}

  /** @returns {Record<string, number>} */
  getInFlight() {
    return {};
  }

  /** @returns {void} */
  putInFlight() {}

  /** @param {object} rules @returns {void} */
  putRules(rules) {
    this.rules = rules;
  }

  /** @param {unknown} consent @returns {void} */
  putConsent(consent) {
    this.consent = consent;
  }
}
