// The stored queue: what is queued, dead-lettered and quarantined, in storage
// and in the ordered in-memory mirror the unload beacon and the core's
// `Restored` read. It speaks records (append, remove, requeue, quarantine);
// the Store under it (storage/) speaks keys and strings.
//
// Three things happen here by rules the core published, because they must
// happen when the core cannot answer (before Pyodide has loaded, or if it
// failed): every stored value is checked at load (records.js, the core's own
// checks) and a bad one is quarantined alone; the queue is kept within
// maxQueue / maxQueueBytes by the core's eviction order; and the consent
// state gates what is stored.
//
// PII: a record flagged `pii` is never written in clear. Sealing (AES-GCM in
// pii.js) is asynchronous, so such a record lives in the mirror (memory) until
// its sealed form is written, a millisecond later; without a vault it stays
// memory-only.

import { consentAllows } from "./consent.js";
import { utf8Length } from "./json_encode.js";
import { joinPii, splitPii } from "./pii.js";
import { checkStored, SCHEMA_VERSION } from "./records.js";

/** @typedef {import("./types.js").Store} Store */
/** @typedef {import("./types.js").Rules} Rules */
/** @typedef {import("./capture.js").Captured} Captured */

/** Quarantined values kept (oldest out first), and how much of each. */
export const MAX_QUARANTINED = 100;
export const QUARANTINE_SAMPLE_CHARS = 8192;

/**
 * @typedef {object} Entry  one queued item in the mirror
 * @property {number} seq
 * @property {string} env       the clear envelope's JSON text (what the wire carries)
 * @property {number} bytes     UTF-8 size of `env` (plus the mutation)
 * @property {object|null} meta
 * @property {object|null} mutation
 * @property {string} event
 * @property {string} category
 * @property {string} priority
 * @property {boolean} held     kept in memory until the consent state is known
 * @property {number} cls       eviction class (rules.evictionRank)
 */

export class QueueStore {
  /**
   * @param {{store: Store, rules: Rules, consent?: unknown,
   *          onStorageFailure: (operation: string, error: unknown) => void}} deps
   */
  constructor({ store, rules, consent = "granted", onStorageFailure }) {
    this.store = store;
    this.rules = rules;
    this.consent = consent;
    this.onStorageFailure = onStorageFailure;
    /** Writes reach storage (false: memory only, for the rest of this page). */
    this.durable = store.durable;
    /** While true, the queue applies the published caps itself (no core to ask). */
    this.selfGoverned = true;
    /** Counted by reason while self-governed, for the core's `Restored`. */
    this.droppedBeforeStart = { overflow: 0, overflow_bytes: 0, consent: 0 };
    this.quarantinedBeforeStart = {};
    this.repairedBeforeStart = 0;
    /** @type {Map<string, Entry>} the queue in seq order */
    this.queue = new Map();
    this.queuedBytes = 0;
    /** Queued items per eviction class (index: the class's rank). */
    this.classCount = [0, 0, 0, 0, 0];
    /** @type {Map<string, object>} dead letters (clear values), by event_id */
    this.dead = new Map();
    /** @type {Map<string, object>} quarantined values, by quarantine key ("q:<id>" / "d:<id>") */
    this.quarantined = new Map();
    this.lastSeq = 0;
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
   * Read what earlier pages left, checking every value (records.js): good
   * ones join the mirror in seq order (sealed ones wait for the vault),
   * repaired ones are written back, bad ones are quarantined.
   * @param {number} nowMs
   * @returns {{rules: unknown, consent: unknown}} the stored rules and consent (unchecked)
   */
  load(nowMs) {
    const { queued, dead, quarantined, rules, consent } = this.store.loadAll();
    for (const item of quarantined) {
      try {
        this.quarantined.set(item.id, JSON.parse(item.raw));
      } catch (_) {
        this.quarantined.set(item.id, { reason: "unknown", raw: String(item.raw).slice(0, QUARANTINE_SAMPLE_CHARS) });
      }
    }
    for (const [area, items] of [["q", queued], ["d", dead]]) {
      for (const { id, raw } of items) {
        const checked = checkStored(id, raw, area === "d");
        if (!checked.ok) {
          this.setAside(area, id, raw, checked.reason, nowMs);
          this.quarantinedBeforeStart[checked.reason] = (this.quarantinedBeforeStart[checked.reason] ?? 0) + 1;
          continue;
        }
        if (checked.repaired) {
          this.repairedBeforeStart++;
          this.guard("write", () => (area === "q" ? this.store.putRecord(id, checked.text) : this.store.putDeadLetter(id, checked.text)));
        }
        const value = checked.value;
        if (value.sealed) this.sealed.push({ id, value, dead: area === "d" });
        else if (area === "d") this.dead.set(id, value);
        else this.addToMirror(id, value);
      }
    }
    this.sortMirror();
    this.capQuarantine();
    return { rules, consent };
  }

  /**
   * This tab became the leader: take in what other tabs stored and drop from
   * the mirror what they removed (acknowledged while this tab followed).
   * Checked like a load; held and not-yet-sealed items (memory only) stay.
   * @param {number} nowMs
   * @returns {void}
   */
  adopt(nowMs) {
    const { queued, dead } = this.store.loadAll();
    const present = new Set(queued.map((item) => item.id));
    for (const [id, entry] of [...this.queue]) {
      if (!entry.held && !this.unsealed.has(id) && !present.has(id)) this.take(id);
    }
    for (const { id, raw } of queued) {
      if (!this.queue.has(id)) this.external(id, raw, nowMs);
    }
    this.dead.clear();
    for (const { id, raw } of dead) this.externalDead(id, raw, nowMs);
    this.sortMirror();
  }

  /**
   * A record another tab stored: checked, then mirrored (sealed ones once
   * the vault opens them, then `onOpened(raw)` is called).
   * @param {string} id @param {string} raw @param {number} nowMs
   * @param {(raw: string) => void} [onOpened]
   * @returns {string|null} the clear record's text when it joined the mirror now
   */
  external(id, raw, nowMs, onOpened) {
    if (this.queue.has(id)) return null;
    const checked = checkStored(id, raw, false);
    if (!checked.ok) {
      this.setAside("q", id, raw, checked.reason, nowMs);
      return null;
    }
    if (!checked.value.sealed) {
      this.addToMirror(id, checked.value);
      return this.rawOf(this.queue.get(id));
    }
    if (!this.vault) {
      this.sealed.push({ id, value: checked.value, dead: false });
      return null;
    }
    this.vault.open(checked.value.sealed, id).then((secret) => {
      const { sealed: _, ...rest } = checked.value;
      this.addToMirror(id, { ...rest, env: joinPii(checked.value.env, secret) });
      this.sortMirror();
      if (onOpened) onOpened(this.rawOf(this.queue.get(id)));
    }, () => this.setAside("q", id, raw, "unsealable", nowMs));
    return null;
  }

  /** @param {string} id @param {string|null} raw  a dead letter another tab wrote (null: removed) @param {number} nowMs */
  externalDead(id, raw, nowMs) {
    if (raw === null) {
      this.dead.delete(id);
      return;
    }
    const checked = checkStored(id, raw, true);
    if (checked.ok && !checked.value.sealed) this.dead.set(id, checked.value);
  }

  /** Another tab removed this record from storage: forget it here, storage untouched. @param {string} id */
  forget(id) {
    const entry = this.queue.get(id);
    if (entry && !entry.held) this.take(id);
  }

  /**
   * The vault is open (or could not be): open what earlier pages sealed and
   * seal what this page recorded meanwhile. A blob that fails authentication
   * is quarantined (`unsealable`); without a vault, sealed records stay
   * stored for a later page whose vault opens.
   * @param {import("./pii.js").PiiVault|null} vault
   * @param {number} nowMs
   * @returns {Promise<void>}
   */
  async setVault(vault, nowMs) {
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
        this.setAside(dead ? "d" : "q", id, JSON.stringify(value), "unsealable", nowMs);
        this.quarantinedBeforeStart.unsealable = (this.quarantinedBeforeStart.unsealable ?? 0) + 1;
      }
    }
    this.sortMirror();
    for (const id of this.unsealed) {
      const entry = this.queue.get(id);
      if (entry && !entry.held) this.persist(id, this.rawOf(entry), entry.meta, false);
    }
    this.unsealed.clear();
  }

  /** @param {number} nowMs @returns {number} the seq for a record made now (not taken until appended) */
  nextSeq(nowMs) {
    return Math.max(nowMs * 1000, this.lastSeq + 1);
  }

  /**
   * Add a captured item. Stored at once unless `held` (the consent state is
   * not known yet: memory only). While self-governed, the caps apply after.
   * @param {Captured} captured
   * @param {boolean} held
   * @returns {boolean} whether it is still queued (the caps may evict it at once)
   */
  append(captured, held) {
    const { eventId, raw, envText, bytes, seq, meta, mutation, category, priority } = captured;
    this.lastSeq = Math.max(this.lastSeq, seq);
    this.put(eventId, { seq, env: envText, bytes, meta, mutation, event: captured.event, category, priority, held, cls: 0 });
    if (!held) this.persist(eventId, raw, meta, true);
    if (this.selfGoverned) this.enforceCaps();
    return this.queue.has(eventId);
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

  /**
   * The eviction class of an entry, by the core's published order
   * (`evictionRank`: low-priority and coalescible events first, mutations last).
   * @param {Entry} entry
   * @returns {number}
   */
  evictionClass(entry) {
    const rank = this.rules.evictionRank;
    if (entry.mutation) return rank.mutation;
    if (this.rules.coalesce.includes(entry.event)) return rank.coalesced;
    return rank[entry.priority] ?? rank.normal;
  }

  /**
   * maxQueue and maxQueueBytes while no core answers: the oldest item of the
   * lowest eviction class goes first (the core's eviction_order).
   */
  enforceCaps() {
    const { maxQueue, maxQueueBytes } = this.rules;
    while (this.queue.size > 0 && (this.queue.size > maxQueue || this.queuedBytes > maxQueueBytes)) {
      const reason = this.queue.size > maxQueue ? "overflow" : "overflow_bytes";
      const cls = this.classCount.findIndex((n) => n > 0);
      let victim = null;
      for (const [id, entry] of this.queue) {
        if (entry.cls === cls) {
          victim = id;
          break;
        }
      }
      if (victim === null) break; // cannot happen: the counts follow the queue
      this.droppedBeforeStart[reason]++;
      this.remove([victim]);
    }
  }

  /** @param {string} id @param {Entry} entry  into the mirror, replacing any entry of that id */
  put(id, entry) {
    this.take(id);
    entry.cls = this.evictionClass(entry);
    this.classCount[entry.cls]++;
    this.queuedBytes += entry.bytes;
    this.queue.set(id, entry);
  }

  /** @param {string} id @returns {Entry|undefined} out of the mirror */
  take(id) {
    const entry = this.queue.get(id);
    if (!entry) return undefined;
    this.queue.delete(id);
    this.queuedBytes -= entry.bytes;
    this.classCount[entry.cls]--;
    return entry;
  }

  /**
   * `revu.consent(state)`: purge at once what the new state forbids, from
   * storage and the mirror (queued, sealed and dead letters), and store the
   * held items it now allows. An unknown state purges nothing.
   * @param {unknown} state  already checked by consentProblem
   * @returns {number} how many items were purged
   */
  setConsent(state) {
    this.consent = state;
    if (state === "unknown") return 0;
    const allows = (meta, mutation) => consentAllows(state, categoryOf(meta, mutation, this.rules));
    const gone = [...this.queue].filter(([, e]) => !consentAllows(state, e.category)).map(([id]) => id);
    this.remove(gone);
    for (const [id, entry] of this.queue) {
      if (!entry.held) continue;
      entry.held = false;
      this.persist(id, this.rawOf(entry), entry.meta, true);
    }
    const sealedGone = this.sealed.filter(({ value }) => !allows(value.meta, value.mutation));
    this.sealed = this.sealed.filter((s) => !sealedGone.includes(s));
    this.guard("delete", () => this.store.deleteRecords(sealedGone.filter((s) => !s.dead).map((s) => s.id)));
    const deadGone = [...this.dead].filter(([, v]) => !allows(v.meta, v.mutation)).map(([id]) => id);
    this.deleteDeadLetters([...deadGone, ...sealedGone.filter((s) => s.dead).map((s) => s.id)]);
    const count = gone.length + deadGone.length + sealedGone.length;
    if (this.selfGoverned) this.droppedBeforeStart.consent += count;
    return count;
  }

  /** @param {string[]} ids @returns {void} */
  remove(ids) {
    const stored = [];
    for (const id of ids) {
      const entry = this.take(id);
      if (!entry || !entry.held) stored.push(id);
      this.unsealed.delete(id);
    }
    if (stored.length) this.guard("delete", () => this.store.deleteRecords(stored));
  }

  /** @param {object[]} entries  dead letters from the core (clear) @returns {void} */
  storeDeadLetters(entries) {
    for (const entry of entries) {
      const id = entry.env.event_id;
      this.remove([id]);
      this.dead.set(id, entry);
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
      this.deleteDeadLetters([id]);
      this.addToMirror(id, value);
      this.persist(id, JSON.stringify(value), value.meta, true);
    }
    this.sortMirror();
  }

  /**
   * The core's `Quarantine` command: set these stored values aside.
   * @param {{id: string, area: string, reason: string}[]} entries
   * @param {number} nowMs
   */
  quarantine(entries, nowMs) {
    for (const { id, area, reason } of entries) {
      const dead = area === "dead";
      const entry = dead ? this.dead.get(id) : this.queue.get(id);
      let raw = "";
      if (entry) raw = dead ? JSON.stringify(entry) : this.rawOf(entry);
      if (dead) this.deleteDeadLetters([id]);
      else this.remove([id]);
      this.setAside(dead ? "d" : "q", id, raw, reason, nowMs, false);
    }
    this.capQuarantine();
  }

  /**
   * Move a stored value aside under the quarantine key, with why.
   * @param {"q"|"d"} area @param {string} id @param {unknown} raw @param {string} reason
   * @param {number} nowMs @param {boolean} [deleteOriginal]
   */
  setAside(area, id, raw, reason, nowMs, deleteOriginal = true) {
    const text = typeof raw === "string" ? raw : String(raw);
    const key = `${area}:${id}`;
    const value = {
      reason,
      area: area === "d" ? "dead" : "queue",
      id,
      at_ms: nowMs,
      bytes: utf8Length(text),
      raw: text.slice(0, QUARANTINE_SAMPLE_CHARS),
      truncated: text.length > QUARANTINE_SAMPLE_CHARS,
    };
    this.quarantined.set(key, value);
    if (deleteOriginal) this.guard("delete", () => (area === "d" ? this.store.deleteDeadLetters([id]) : this.store.deleteRecords([id])));
    if (this.durable) this.guard("quarantine", () => this.store.putQuarantine(key, JSON.stringify(value)));
  }

  /** Keep at most MAX_QUARANTINED, oldest out. */
  capQuarantine() {
    if (this.quarantined.size <= MAX_QUARANTINED) return;
    const oldest = [...this.quarantined].sort((a, b) => (a[1].at_ms ?? 0) - (b[1].at_ms ?? 0));
    const gone = oldest.slice(0, this.quarantined.size - MAX_QUARANTINED).map(([key]) => key);
    for (const key of gone) this.quarantined.delete(key);
    this.guard("delete", () => this.store.deleteQuarantine(gone));
  }

  /** @param {string} id  a quarantine key or a storage id @returns {boolean} */
  dropQuarantined(id) {
    const keys = [id, `q:${id}`, `d:${id}`].filter((k) => this.quarantined.has(k));
    for (const key of keys) this.quarantined.delete(key);
    if (keys.length) this.guard("delete", () => this.store.deleteQuarantine(keys));
    return keys.length > 0;
  }

  /** @param {Rules} rules  the core's, when it publishes them @returns {void} */
  setRules(rules) {
    this.rules = rules;
    this.classCount.fill(0);
    for (const entry of this.queue.values()) {
      entry.cls = this.evictionClass(entry);
      this.classCount[entry.cls]++;
    }
    if (this.durable) this.guard("write", () => this.store.putRules(rules));
  }

  /**
   * Everything queued now, as stored values in clear, for the core's `Restored`.
   * @returns {{queued: {id: string, raw: string}[], dead: {id: string, raw: string}[]}}
   */
  snapshot() {
    const queued = [];
    for (const [id, entry] of this.queue) queued.push({ id, raw: this.rawOf(entry) });
    const dead = [];
    for (const [id, value] of this.dead) dead.push({ id, raw: JSON.stringify(value) });
    return { queued, dead };
  }

  /** @param {string} id @returns {boolean} whether the item is queued and held in memory */
  isHeld(id) {
    return this.queue.get(id)?.held === true;
  }

  /**
   * For `revu.outbox.entries()`: queued, dead-lettered and quarantined items, in clear.
   * @returns {object[]}
   */
  entries() {
    const out = [];
    for (const [id, entry] of this.queue) out.push(describe(id, this.valueOf(entry), entry.held ? "held" : "pending"));
    for (const [id, value] of this.dead) out.push(describe(id, value, "failed"));
    for (const [key, value] of this.quarantined) {
      out.push({ id: key, kind: "quarantined", status: "quarantined", reason: value.reason, area: value.area,
        createdAt: value.at_ms ?? null, bytes: value.bytes ?? null, sample: value.raw ?? "", truncated: !!value.truncated });
    }
    return out;
  }

  /** @param {Entry} entry @returns {string} the stored value's text, in clear */
  rawOf(entry) {
    let raw = `{"v":${SCHEMA_VERSION},"seq":${entry.seq},"env":${entry.env}`;
    if (entry.meta) raw += `,"meta":${JSON.stringify(entry.meta)}`;
    if (entry.mutation) raw += `,"mutation":${JSON.stringify(entry.mutation)}`;
    return `${raw}}`;
  }

  /** @param {Entry} entry @returns {object} */
  valueOf(entry) {
    return JSON.parse(this.rawOf(entry));
  }

  /** @param {string} id @param {object} value  a checked, clear record */
  addToMirror(id, value) {
    const env = JSON.stringify(value.env);
    const mutation = value.mutation ?? null;
    const bytes = utf8Length(env) + (mutation ? utf8Length(JSON.stringify(mutation)) : 0);
    this.put(id, {
      seq: value.seq, env, bytes, meta: value.meta ?? null, mutation,
      event: value.env.event, category: categoryOf(value.meta, mutation, this.rules),
      priority: value.env.priority ?? "normal", held: false, cls: 0,
    });
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

/** @param {object|null|undefined} meta @param {object|null|undefined} mutation @param {Rules} rules @returns {string} */
function categoryOf(meta, mutation, rules) {
  return mutation ? rules.necessaryCategory : (meta && meta.category) || rules.defaultCategory;
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
