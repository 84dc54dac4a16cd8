// Capture: the one piece of policy the shim owns, forced by physics (see
// DESIGN.md). record() must be durable when it returns and cannot wait for
// Python, and during unload there is no time to ask Python. So this file
// builds the envelope, applies the consent gate, appends the record to
// storage synchronously (PII sealed first, see below), keeps the ordered
// mirror of what is queued and of the dead letters, and builds the terminal
// beacon from it, all by the rules the core last published (`Rules`).
// Everything else is the core's decision.
//
// PII: a record flagged `pii` is never written in clear. Sealing (AES-GCM in
// pii.js) is asynchronous, so such a record lives in the mirror (memory) until
// its sealed form is written, a millisecond later; without a vault it stays
// memory-only. The stored format is described in py_src/revu/_records.py.

import { uuid } from "./clock.js";
import { consentAllows } from "./consent.js";
import { joinPii, splitPii } from "./pii.js";

/** @typedef {import("./types.js").Store} Store */
/** @typedef {import("./types.js").Rules} Rules */

const SCHEMA_VERSION = 1;
const PRIORITIES = new Set(["high", "normal", "low"]);
const OPTION_KEYS = new Set(["stream", "priority", "keys", "category", "ttlMs", "pii"]);
const METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const MUTATION_KEYS = new Set(["method", "url", "body", "headers", "idempotencyKey", "stream"]);
export const DEFAULT_CATEGORY = "analytics";

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

/**
 * @typedef {object} Entry  one queued item in the mirror
 * @property {number} seq
 * @property {string} env       the clear envelope as JSON
 * @property {number} bytes     UTF-8 length of `env`
 * @property {object|null} meta
 * @property {object|null} mutation
 */

/** @param {object|null} meta @param {object|null} mutation @returns {string} */
function categoryOf(meta, mutation) {
  return mutation ? "necessary" : (meta && meta.category) || DEFAULT_CATEGORY;
}

export class Capture {
  /**
   * @param {{store: Store, rules: Rules, apiKey: string, consent?: unknown,
   *          onStorageFailure: (operation: string, error: unknown) => void}} deps
   */
  constructor({ store, rules, apiKey, consent = "granted", onStorageFailure }) {
    this.store = store;
    this.rules = rules;
    this.apiKey = apiKey;
    this.consent = consent;
    this.onStorageFailure = onStorageFailure;
    /** Writes reach storage (false: memory only, for the rest of this page). */
    this.durable = store.durable;
    /** While false, capture applies `rules.maxQueue` itself. */
    this.coreLive = false;
    /** Drops by rules applied before the core ran, by reason (for `Restored`). */
    this.droppedBeforeStart = { overflow: 0, consent: 0 };
    /** @type {Map<string, Entry>} ordered mirror of the queue */
    this.queue = new Map();
    /** @type {Map<string, object>} dead letters (clear values), by id */
    this.dead = new Map();
    this.lastSeq = 0;
    /** Stored values that did not parse; the core reports and deletes them. */
    /** @type {{id: string, raw: string}[]} */
    this.unreadable = [];
    /** @type {{id: string, raw: string}[]} */
    this.unreadableDead = [];
    /** Sealed values waiting for the vault: [{id, value, dead}]. */
    this.sealed = [];
    /** @type {import("./pii.js").PiiVault|null} */
    this.vault = null;
    /** "pending" until the vault opens, then "encrypted" or "memory". */
    this.piiMode = "pending";
    /** PII records recorded before the vault was ready, waiting to be sealed. */
    this.unsealed = new Set();
    /** Seals under way (their writes follow). @type {Set<Promise<void>>} */
    this.sealing = new Set();
  }

  /** @returns {Promise<void>} once every seal started so far has been written (or failed) */
  async sealsSettled() {
    await Promise.all([...this.sealing]);
  }

  /**
   * Read what earlier pages left. Queued records are handed to the core raw
   * (it decides what is corrupt); the mirror takes those that parse, in seq
   * order. Sealed ones wait for `openSealed`.
   * @returns {{rules: Rules|null, consent: unknown}} what the last page stored: the
   *   core's published rules and the page's consent state, if any
   */
  load() {
    const { queued, dead, rules, consent } = this.store.loadAll();
    for (const item of queued) {
      const value = parseRecord(item.raw);
      if (!value) this.unreadable.push(item);
      else if (value.sealed) this.sealed.push({ id: item.id, value, dead: false });
      else this.addToMirror(item.id, value);
    }
    for (const item of dead) {
      const value = parseRecord(item.raw);
      if (!value) this.unreadableDead.push(item);
      else if (value.sealed) this.sealed.push({ id: item.id, value, dead: true });
      else this.dead.set(item.id, value);
    }
    this.sortMirror();
    return { rules, consent };
  }

  /**
   * The vault is open (or could not be): open what earlier pages sealed and
   * seal what this page recorded meanwhile. A blob that fails authentication
   * goes to the core as unreadable (counted as corrupt); without a vault,
   * sealed records stay stored for a later page whose vault opens.
   * @param {import("./pii.js").PiiVault|null} vault
   * @returns {Promise<void>}
   */
  async setVault(vault) {
    this.vault = vault;
    this.piiMode = vault ? "encrypted" : "memory";
    if (!vault) return;
    for (const { id, value, dead } of this.sealed.splice(0)) {
      try {
        const secret = await vault.open(value.sealed, id);
        const { sealed: _, ...rest } = value;
        const clear = { ...rest, env: joinPii(value.env, secret) };
        if (dead) this.dead.set(id, clear);
        else this.addToMirror(id, clear);
      } catch (_) {
        (dead ? this.unreadableDead : this.unreadable).push({ id, raw: JSON.stringify(value) });
      }
    }
    this.sortMirror();
    for (const id of this.unsealed) {
      const entry = this.queue.get(id);
      if (entry) this.persist(id, JSON.stringify(this.valueOf(id, entry)), entry.meta, false);
    }
    this.unsealed.clear();
  }

  /**
   * Build the envelope and store it before returning.
   * @param {unknown} event
   * @param {unknown} properties
   * @param {unknown} options
   * @param {number} nowMs
   * @returns {{eventId: string, record: string, durable: boolean, allowed: boolean}}
   *   `record` is the stored value (JSON); `allowed` false: the consent state
   *   forbids the event's category and nothing was stored
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
    const { envelope: extra, meta } = checkOptions(event, options);
    const eventId = uuid();
    const envelope = { event_id: eventId, event, properties, created_at: nowMs, ...extra };
    const env = serialise(envelope, `revu.record("${event}")`);
    if (!env.includes('"properties":{')) {
      throw new InputError("unserialisable", `revu.record("${event}"): properties did not serialise to an object`);
    }
    return this.admit(eventId, env, meta, null, nowMs, `revu.record("${event}")`);
  }

  /**
   * A mutation-outbox entry: stored like an event, sent as its own request.
   * @param {unknown} spec  {method?, url, body?, headers?, idempotencyKey?, stream?}
   * @param {number} nowMs
   * @param {string} baseUrl  for relative URLs (the page's location)
   * @returns {{eventId: string, record: string, durable: boolean, allowed: boolean,
   *            mutation: object, stream: string|null}}
   * @throws {InputError}
   */
  recordMutation(spec, nowMs, baseUrl) {
    const where = "revu.outbox.enqueue";
    if (!spec || typeof spec !== "object" || Array.isArray(spec)) throw new InputError("invalid_mutation", `${where}: needs an object`);
    for (const key of Object.keys(spec)) {
      if (!MUTATION_KEYS.has(key)) throw new InputError("invalid_mutation", `${where}: unknown field "${key}"`);
    }
    const method = String(spec.method ?? "POST").toUpperCase();
    if (!METHODS.has(method)) throw new InputError("invalid_mutation", `${where}: method must be POST, PUT, PATCH or DELETE`);
    let url;
    try {
      url = new URL(String(spec.url), baseUrl).href;
    } catch (_) {
      throw new InputError("invalid_mutation", `${where}: url is not a URL`);
    }
    if (!/^https?:/.test(url)) throw new InputError("invalid_mutation", `${where}: url must be http(s)`);
    const headers = spec.headers ?? {};
    if (typeof headers !== "object" || Array.isArray(headers) || !Object.values(headers).every((v) => typeof v === "string")) {
      throw new InputError("invalid_mutation", `${where}: headers must be an object of strings`);
    }
    const key = spec.idempotencyKey ?? uuid();
    if (typeof key !== "string" || !key) throw new InputError("invalid_mutation", `${where}: idempotencyKey must be a non-empty string`);
    if (spec.stream !== undefined && (typeof spec.stream !== "string" || !spec.stream)) {
      throw new InputError("invalid_mutation", `${where}: stream must be a non-empty string`);
    }
    const eventId = uuid();
    const envelope = { event_id: eventId, event: "$mutation", properties: {}, created_at: nowMs };
    if (spec.stream) envelope.stream = spec.stream;
    const mutation = { method, url, body: spec.body ?? null, headers: { ...headers }, idempotency_key: key };
    serialise(mutation, where); // unserialisable bodies are refused here, not on the wire
    const captured = this.admit(eventId, JSON.stringify(envelope), null, mutation, nowMs, where);
    return { ...captured, mutation, stream: envelope.stream ?? null };
  }

  /**
   * @param {string} eventId @param {string} env @param {object|null} meta
   * @param {object|null} mutation @param {number} nowMs @param {string} where
   * @returns {{eventId: string, record: string, durable: boolean, allowed: boolean}}
   */
  admit(eventId, env, meta, mutation, nowMs, where) {
    const bytes = utf8Length(env) + (mutation ? utf8Length(JSON.stringify(mutation)) : 0);
    if (bytes > this.rules.maxEventBytes) {
      throw new InputError("too_large", `${where}: ${bytes} bytes, over maxEventBytes=${this.rules.maxEventBytes}`);
    }
    const seq = Math.max(nowMs * 1000, this.lastSeq + 1);
    // The stored string is built once and is also what the core is told:
    // no parse-back on the hot path (and a snapshot the page cannot mutate).
    let raw = `{"v":${SCHEMA_VERSION},"seq":${seq},"env":${env}`;
    if (meta) raw += `,"meta":${JSON.stringify(meta)}`;
    if (mutation) raw += `,"mutation":${JSON.stringify(mutation)}`;
    raw += "}";
    if (!consentAllows(this.consent, categoryOf(meta, mutation))) {
      if (!this.coreLive) this.droppedBeforeStart.consent++;
      return { eventId, record: raw, durable: false, allowed: false };
    }
    this.lastSeq = seq;
    if (!this.coreLive) this.evictForRoom();
    this.queue.set(eventId, { seq, env, bytes, meta, mutation });
    this.persist(eventId, raw, meta, true);
    return { eventId, record: raw, durable: this.durable, allowed: true };
  }

  /**
   * Write a queued record: at once in clear, or sealed when it carries PII.
   * @param {string} id @param {string} raw  the stored value in clear
   * @param {object|null} meta @param {boolean} fresh  recorded just now
   */
  persist(id, raw, meta, fresh) {
    if (!this.durable) return;
    if (!(meta && meta.pii)) {
      this.guard("write", () => this.store.putRecord(id, raw));
      return;
    }
    if (this.piiMode === "pending") {
      if (fresh) this.unsealed.add(id);
      return;
    }
    if (this.piiMode === "memory") return;
    this.sealAndWrite(id, JSON.parse(raw), (sealed) => {
      if (this.queue.has(id)) this.store.putRecord(id, sealed); // acked meanwhile: nothing to keep
    });
  }

  /** @param {string} id @param {object} value @param {(raw: string) => void} write */
  sealAndWrite(id, value, write) {
    const { clear, secret } = splitPii(value.env, value.meta.pii);
    const done = this.vault.seal(secret, id).then(
      (sealed) => this.guard("write", () => write(JSON.stringify({ ...value, env: clear, sealed }))),
      (err) => this.onStorageFailure("seal", err),
    );
    this.sealing.add(done);
    done.finally(() => this.sealing.delete(done));
  }

  /** Before the core runs: the published maxQueue, oldest out first. */
  evictForRoom() {
    while (this.queue.size >= this.rules.maxQueue) {
      const oldest = this.queue.keys().next().value;
      this.remove([oldest]);
      this.droppedBeforeStart.overflow++;
    }
  }

  /**
   * `revu.consent(state)`: purge at once what the new state forbids, from
   * storage and from the mirror (queued and dead letters).
   * @param {unknown} state  already checked by consentProblem
   * @returns {number} how many items were purged
   */
  setConsent(state) {
    this.consent = state;
    const gone = [...this.queue].filter(([, e]) => !consentAllows(state, categoryOf(e.meta, e.mutation))).map(([id]) => id);
    this.remove(gone);
    const sealedGone = this.sealed.filter(({ value }) => !consentAllows(state, categoryOf(value.meta, value.mutation)));
    this.sealed = this.sealed.filter((s) => !sealedGone.includes(s));
    this.guard("delete", () => this.store.deleteRecords(sealedGone.filter((s) => !s.dead).map((s) => s.id)));
    const deadGone = [...this.dead].filter(([, v]) => !consentAllows(state, categoryOf(v.meta, v.mutation))).map(([id]) => id);
    this.deleteDeadLetters([...deadGone, ...sealedGone.filter((s) => s.dead).map((s) => s.id)]);
    const count = gone.length + deadGone.length + sealedGone.length;
    if (!this.coreLive) this.droppedBeforeStart.consent += count;
    return count;
  }

  /** @param {string[]} ids @returns {void} */
  remove(ids) {
    for (const id of ids) {
      this.queue.delete(id);
      this.unsealed.delete(id);
    }
    if (ids.length) this.guard("delete", () => this.store.deleteRecords(ids));
  }

  /** @param {object[]} entries  dead letters from the core (clear) @returns {void} */
  storeDeadLetters(entries) {
    for (const entry of entries) {
      const id = entry.env.event_id;
      this.queue.delete(id);
      this.unsealed.delete(id);
      this.dead.set(id, entry);
      this.guard("delete", () => this.store.deleteRecords([id]));
      if (!this.durable) continue;
      if (!(entry.meta && entry.meta.pii)) this.guard("write", () => this.store.putDeadLetter(id, JSON.stringify(entry)));
      else if (this.piiMode === "encrypted") {
        this.sealAndWrite(id, entry, (raw) => {
          if (this.dead.has(id)) this.store.putDeadLetter(id, raw);
        });
      }
    }
  }

  /** @param {string[]} ids @returns {void} */
  deleteDeadLetters(ids) {
    for (const id of ids) this.dead.delete(id);
    if (ids.length) this.guard("delete", () => this.store.deleteDeadLetters(ids));
  }

  /** The core put dead letters back in the queue. @param {object[]} records @returns {void} */
  requeue(records) {
    for (const value of records) {
      const id = value.env.event_id;
      const env = JSON.stringify(value.env);
      this.deleteDeadLetters([id]);
      this.queue.set(id, { seq: value.seq, env, bytes: utf8Length(env), meta: value.meta ?? null, mutation: value.mutation ?? null });
      this.persist(id, JSON.stringify(value), value.meta, true);
    }
    this.sortMirror();
  }

  /** @param {Rules} rules @returns {void} */
  setRules(rules) {
    this.rules = rules;
    if (this.durable) this.guard("write", () => this.store.putRules(rules));
  }

  /**
   * Everything queued now, as stored values in clear, for the core's `Restored`.
   * @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[]}}
   */
  snapshot() {
    const queued = this.unreadable.slice();
    for (const [id, entry] of this.queue) queued.push({ id, raw: JSON.stringify(this.valueOf(id, entry)) });
    const dead = this.unreadableDead.slice();
    for (const [id, value] of this.dead) dead.push({ id, raw: JSON.stringify(value) });
    return { queued, dead };
  }

  /**
   * For `revu.outbox.entries()`: queued and dead-lettered items, in clear.
   * @returns {object[]}
   */
  entries() {
    const out = [];
    for (const [id, entry] of this.queue) out.push(describe(id, this.valueOf(id, entry), "pending"));
    for (const [id, value] of this.dead) out.push(describe(id, value, "failed"));
    return out;
  }

  /**
   * The terminal beacon body: queued events (not mutations) in order,
   * skipping `exclude` (already beaconed during this hidden period), within
   * `beaconMaxBytes`.
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
    for (const [id, { env, bytes: envBytes, mutation }] of this.queue) {
      if (mutation || exclude.has(id)) continue;
      const cost = envBytes + sentAt.length; // the closing brace is swapped, the comma added
      if (bytes + cost > this.rules.beaconMaxBytes) break;
      bytes += cost;
      ids.push(id);
      parts.push(env.slice(0, -1) + sentAt);
    }
    if (ids.length === 0) return null;
    return { ids, body: `${head}${parts.join(",")}]}` };
  }

  /** @param {string} id @param {Entry} entry @returns {object} the stored value, in clear */
  valueOf(id, entry) {
    const value = { v: SCHEMA_VERSION, seq: entry.seq, env: JSON.parse(entry.env) };
    if (entry.meta) value.meta = entry.meta;
    if (entry.mutation) value.mutation = entry.mutation;
    return value;
  }

  /** @param {string} id @param {object} value */
  addToMirror(id, value) {
    const env = JSON.stringify(value.env);
    this.queue.set(id, { seq: value.seq, env, bytes: utf8Length(env), meta: value.meta ?? null, mutation: value.mutation ?? null });
    this.lastSeq = Math.max(this.lastSeq, value.seq);
  }

  sortMirror() {
    this.queue = new Map([...this.queue].sort((a, b) => a[1].seq - b[1].seq));
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

/** @param {string} raw @returns {object|null} a stored value that looks like a record */
function parseRecord(raw) {
  try {
    const value = JSON.parse(raw);
    if (value && Number.isSafeInteger(value.seq) && value.env && typeof value.env === "object") return value;
  } catch (_) {
    // unreadable
  }
  return null;
}

/** @param {unknown} value @param {string} where @returns {string} */
function serialise(value, where) {
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new InputError("unserialisable", `${where}: not JSON-serialisable (${err.message})`);
  }
}

/** @param {string} id @param {object} value @param {string} status @returns {object} */
function describe(id, value, status) {
  const out = {
    id,
    kind: value.mutation ? "mutation" : "event",
    status,
    envelope: value.env,
    createdAt: value.env.created_at,
    stream: value.env.stream ?? null,
  };
  if (value.mutation) {
    out.mutation = value.mutation;
    out.idempotencyKey = value.mutation.idempotency_key;
  }
  if (status === "failed") out.error = { reason: value.reason, status: value.status, attempts: value.attempts };
  return out;
}

/**
 * @param {string} event
 * @param {unknown} options
 * @returns {{envelope: object, meta: object|null}} envelope fields and stored flags from record()'s options
 */
function checkOptions(event, options) {
  const envelope = {};
  if (options === undefined || options === null) return { envelope, meta: null };
  const bad = (msg) => new InputError("invalid_options", `revu.record("${event}"): ${msg}`);
  if (typeof options !== "object" || Array.isArray(options)) throw bad("options must be an object");
  for (const key of Object.keys(options)) if (!OPTION_KEYS.has(key)) throw bad(`unknown option "${key}"`);
  if (options.stream !== undefined) {
    if (typeof options.stream !== "string" || !options.stream) throw bad("stream must be a non-empty string");
    envelope.stream = options.stream;
  }
  if (options.priority !== undefined) {
    if (!PRIORITIES.has(options.priority)) throw bad('priority must be "high", "normal" or "low"');
    envelope.priority = options.priority;
  }
  if (options.keys !== undefined) {
    const keys = options.keys;
    if (!keys || typeof keys !== "object" || Array.isArray(keys) || !Object.values(keys).every((v) => typeof v === "string")) {
      throw bad("keys must be an object of strings");
    }
    envelope.keys = { ...keys };
  }
  const meta = {};
  if (options.category !== undefined) {
    if (typeof options.category !== "string" || !options.category) throw bad("category must be a non-empty string");
    if (options.category !== DEFAULT_CATEGORY) meta.category = options.category;
  }
  if (options.ttlMs !== undefined) {
    if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs < 1) throw bad("ttlMs must be a positive integer");
    meta.ttl_ms = options.ttlMs;
  }
  if (options.pii !== undefined && options.pii !== false) {
    const ok = options.pii === true || (Array.isArray(options.pii) && options.pii.length && options.pii.every((k) => typeof k === "string" && k));
    if (!ok) throw bad("pii must be true or a non-empty list of property names");
    meta.pii = options.pii === true ? true : [...options.pii];
  }
  return { envelope, meta: Object.keys(meta).length ? meta : null };
}
