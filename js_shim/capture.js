// Capture: the one piece of policy the shim owns, forced by physics (see
// DESIGN.md). record() must be durable when it returns and cannot wait for
// Python, and during unload there is no time to ask Python. So this file
// builds the envelope, appends the record to storage synchronously, keeps the
// ordered mirror of what is queued, and builds the terminal beacon from it,
// all by the rules the core last published (`Rules`). Everything else is the
// core's decision.
//
// The stored format is described in py_src/revu/_records.py.

import { uuid } from "./clock.js";

/** @typedef {import("./types.js").Store} Store */
/** @typedef {import("./types.js").Rules} Rules */

const SCHEMA_VERSION = 1;
const PRIORITIES = new Set(["high", "normal", "low"]);
const OPTION_KEYS = new Set(["stream", "priority", "keys"]);

/** A caller mistake in record(): reported, never thrown into the page. */
export class InputError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * UTF-8 length of a string without allocating.
 * @param {string} s
 * @returns {number}
 */
export function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 2; // a surrogate pair is 4 bytes for 2 UTF-16 units
      i++;
    } else n += 2;
  }
  return n;
}

export class Capture {
  /**
   * @param {{store: Store, rules: Rules, apiKey: string,
   *          onStorageFailure: (operation: string, error: unknown) => void}} deps
   */
  constructor({ store, rules, apiKey, onStorageFailure }) {
    this.store = store;
    this.rules = rules;
    this.apiKey = apiKey;
    this.onStorageFailure = onStorageFailure;
    /** Writes reach storage (false: memory only, for the rest of this page). */
    this.durable = store.durable;
    /** While false, capture applies `rules.maxQueue` itself. */
    this.coreLive = false;
    this.droppedBeforeStart = 0;
    /** Ordered mirror of the queue: event_id -> {seq, env: envelope JSON, bytes}. */
    /** @type {Map<string, {seq: number, env: string, bytes: number}>} */
    this.queue = new Map();
    this.lastSeq = 0;
    /** Stored values that did not parse; the core reports and deletes them. */
    /** @type {{id: string, raw: string}[]} */
    this.unreadable = [];
    /** @type {{id: string, raw: string}[]} */
    this.loadedDead = [];
  }

  /**
   * Read what earlier pages left. Records are handed to the core raw (it
   * decides what is corrupt); the mirror takes those that parse, in seq order.
   * @returns {Rules|null} the rules stored by the core's last run, if any
   */
  load() {
    const { queued, dead, rules } = this.store.loadAll();
    this.loadedDead = dead;
    const parsed = [];
    for (const item of queued) {
      try {
        const value = JSON.parse(item.raw);
        if (Number.isSafeInteger(value.seq) && value.env && typeof value.env === "object") {
          parsed.push({ id: item.id, seq: value.seq, env: JSON.stringify(value.env) });
          continue;
        }
      } catch (_) {
        // fall through
      }
      this.unreadable.push(item);
    }
    parsed.sort((a, b) => a.seq - b.seq);
    for (const p of parsed) {
      this.queue.set(p.id, { seq: p.seq, env: p.env, bytes: utf8Length(p.env) });
      this.lastSeq = Math.max(this.lastSeq, p.seq);
    }
    return rules;
  }

  /**
   * Build the envelope and store it before returning.
   * @param {unknown} event
   * @param {unknown} properties
   * @param {unknown} options
   * @param {number} nowMs
   * @returns {{eventId: string, record: object, durable: boolean}}
   * @throws {InputError} bad input; nothing is stored
   */
  record(event, properties, options, nowMs) {
    if (typeof event !== "string" || event.length === 0) {
      throw new InputError("invalid_event", "revu.record: event name must be a non-empty string");
    }
    if (properties === undefined || properties === null) properties = {};
    if (typeof properties !== "object" || Array.isArray(properties)) {
      throw new InputError("invalid_properties", `revu.record("${event}"): properties must be a plain object`);
    }
    const eventId = uuid();
    const envelope = { event_id: eventId, event, properties, created_at: nowMs };
    Object.assign(envelope, checkOptions(event, options));
    let env;
    try {
      env = JSON.stringify(envelope);
    } catch (err) {
      throw new InputError("unserialisable", `revu.record("${event}"): properties are not JSON-serialisable (${err.message})`);
    }
    if (env[env.length - 1] !== "}" || !env.includes('"properties":{')) {
      throw new InputError("unserialisable", `revu.record("${event}"): properties did not serialise to an object`);
    }
    const bytes = utf8Length(env);
    if (bytes > this.rules.maxEventBytes) {
      throw new InputError("too_large", `revu.record("${event}"): event is ${bytes} bytes, over maxEventBytes=${this.rules.maxEventBytes}`);
    }
    const seq = Math.max(nowMs * 1000, this.lastSeq + 1);
    this.lastSeq = seq;
    const raw = `{"v":${SCHEMA_VERSION},"seq":${seq},"env":${env}}`;
    if (!this.coreLive) this.evictForRoom();
    if (this.durable) {
      try {
        this.store.putRecord(eventId, raw);
      } catch (err) {
        this.durable = false;
        this.onStorageFailure("write", err);
      }
    }
    this.queue.set(eventId, { seq, env, bytes });
    return { eventId, record: { v: SCHEMA_VERSION, seq, env: JSON.parse(env) }, durable: this.durable };
  }

  /**
   * Everything queued now, as stored values, for the core's `Restored` fact.
   * @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[]}}
   */
  snapshot() {
    const queued = this.unreadable.slice();
    for (const [id, { seq, env }] of this.queue) {
      queued.push({ id, raw: `{"v":${SCHEMA_VERSION},"seq":${seq},"env":${env}}` });
    }
    return { queued, dead: this.loadedDead };
  }

  /** Before the core runs: the published maxQueue, oldest out first. */
  evictForRoom() {
    while (this.queue.size >= this.rules.maxQueue) {
      const oldest = this.queue.keys().next().value;
      this.remove([oldest]);
      this.droppedBeforeStart++;
    }
  }

  /** @param {string[]} ids @returns {void} */
  remove(ids) {
    for (const id of ids) this.queue.delete(id);
    this.guard("delete", () => this.store.deleteRecords(ids));
  }

  /** @param {{v: number, env: {event_id: string}}[]} entries @returns {void} */
  storeDeadLetters(entries) {
    for (const entry of entries) {
      const id = entry.env.event_id;
      this.queue.delete(id);
      if (this.durable) this.guard("write", () => this.store.putDeadLetter(id, JSON.stringify(entry)));
      this.guard("delete", () => this.store.deleteRecords([id]));
    }
  }

  /** @param {string[]} ids @returns {void} */
  deleteDeadLetters(ids) {
    this.guard("delete", () => this.store.deleteDeadLetters(ids));
  }

  /** @param {Rules} rules @returns {void} */
  setRules(rules) {
    this.rules = rules;
    if (this.durable) this.guard("write", () => this.store.putRules(rules));
  }

  /**
   * The terminal beacon body: queued envelopes in order, skipping `exclude`
   * (already beaconed during this hidden period), within `beaconMaxBytes`.
   * @param {Set<string>} exclude
   * @param {number} nowMs
   * @returns {{ids: string[], body: string}|null}
   */
  terminalBatch(exclude, nowMs) {
    const head = `{"api_key":${JSON.stringify(this.apiKey)},"batch":[`;
    const sentAt = `,"sent_at":${nowMs}}`;
    let bytes = utf8Length(head) + 2;
    const ids = [];
    const parts = [];
    for (const [id, { env, bytes: envBytes }] of this.queue) {
      if (exclude.has(id)) continue;
      const cost = envBytes + sentAt.length; // the closing brace is swapped, the comma added
      if (bytes + cost > this.rules.beaconMaxBytes) break;
      bytes += cost;
      ids.push(id);
      parts.push(env.slice(0, -1) + sentAt);
    }
    if (ids.length === 0) return null;
    return { ids, body: `${head}${parts.join(",")}]}` };
  }

  /** @param {string} operation @param {() => void} fn */
  guard(operation, fn) {
    try {
      fn();
    } catch (err) {
      if (operation === "write") this.durable = false;
      this.onStorageFailure(operation, err);
    }
  }
}

/**
 * @param {string} event
 * @param {unknown} options
 * @returns {object} envelope fields from record()'s options
 */
function checkOptions(event, options) {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object" || Array.isArray(options)) {
    throw new InputError("invalid_options", `revu.record("${event}"): options must be an object`);
  }
  const out = {};
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw new InputError("invalid_options", `revu.record("${event}"): unknown option "${key}"`);
  }
  if (options.stream !== undefined) {
    if (typeof options.stream !== "string" || !options.stream) {
      throw new InputError("invalid_options", `revu.record("${event}"): stream must be a non-empty string`);
    }
    out.stream = options.stream;
  }
  if (options.priority !== undefined) {
    if (!PRIORITIES.has(options.priority)) {
      throw new InputError("invalid_options", `revu.record("${event}"): priority must be "high", "normal" or "low"`);
    }
    out.priority = options.priority;
  }
  if (options.keys !== undefined) {
    const keys = options.keys;
    if (!keys || typeof keys !== "object" || Array.isArray(keys) || !Object.values(keys).every((v) => typeof v === "string")) {
      throw new InputError("invalid_options", `revu.record("${event}"): keys must be an object of strings`);
    }
    out.keys = { ...keys };
  }
  return out;
}
