// Wiring only: builds the page's `revu` object from the pieces.
//
// Every public call is a trust boundary: whatever the page passes (or however
// it calls), nothing throws into the page; a mistake becomes an `error` event
// and a documented fallback value (see README "What revu does with bad input").

import { loadCore } from "./bridge.js";
import { InputError, captureEvent, captureMutation } from "./capture.js";
import { Timers, jitter, nowMs, soon, uuid } from "./clock.js";
import { UNKNOWN_CONSENT, consentAllows, consentCopy, consentProblem } from "./consent.js";
import { Driver } from "./driver.js";
import { Emitter } from "./emitter.js";
import { encodeJson } from "./json_encode.js";
import { Lifecycle } from "./lifecycle.js";
import { createLogger } from "./log.js";
import { PiiVault } from "./pii.js";
import { QueueStore } from "./queue_store.js";
import { rulesFor, storedRulesProblem } from "./rules.js";
import { IndexedDbKeyStore } from "./storage/indexeddb.js";
import { LocalStorageStore } from "./storage/local_storage.js";
import { MemoryStore } from "./storage/memory.js";
import { terminalBatch } from "./terminal.js";
import { sendBeacon } from "./transport/beacon.js";
import { sendRequest } from "./transport/fetch_keepalive.js";

const VERSION = "0.1.0";
/** init() options: bounded like any page input (and passed to the core as JSON). */
const OPTION_LIMITS = { maxDepth: 8, maxMembers: 1000, maxBytes: 100000 };
const STORAGE_KEY = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * init()'s options as a plain JSON copy, with the fields the shim itself
 * reads checked.
 * @param {unknown} options
 * @returns {Record<string, any>}
 * @throws {InputError} invalid_options
 */
function readInitOptions(options) {
  let text;
  try {
    if (!options || typeof options !== "object" || Array.isArray(options)) throw new InputError("invalid_options", "revu.init needs an options object");
    text = encodeJson(options, "revu.init", OPTION_LIMITS);
  } catch (err) {
    throw new InputError("invalid_options", err instanceof InputError && err.code === "invalid_options" ? err.message : `revu.init: options are not usable (${err.message})`);
  }
  const opts = JSON.parse(text);
  const bad = (msg) => new InputError("invalid_options", `revu.init: ${msg}`);
  if (typeof opts.apiKey !== "string" || !opts.apiKey.trim() || opts.apiKey.length > 1000) throw bad("apiKey must be a non-empty string");
  if (opts.host !== undefined && (typeof opts.host !== "string" || !/^https?:\/\/[^/]/.test(opts.host))) throw bad("host must be an http(s) URL");
  if (opts.storageKey !== undefined && (typeof opts.storageKey !== "string" || !STORAGE_KEY.test(opts.storageKey))) {
    throw bad("storageKey must be 1 to 64 letters, digits, _ or -");
  }
  if (opts.storage !== undefined && opts.storage !== "memory" && opts.storage !== "localStorage") throw bad('storage must be "localStorage" or "memory"');
  if (opts.assetsUrl !== undefined && typeof opts.assetsUrl !== "string") throw bad("assetsUrl must be a string");
  return opts;
}

/**
 * Create a revu instance.
 * @param {{scriptUrl?: string, loadCore?: typeof loadCore}} [env]  where revu.js was loaded
 *   from (assets resolve relative to it) and, for tests, another core loader
 * @returns {object} the public API (see README "API")
 */
export function createRevu(env = {}) {
  const emitter = new Emitter();
  let debug = false;
  const log = createLogger(() => debug);
  /** @type {QueueStore|null} */
  let queue = null;
  /** @type {Driver|null} */
  let driver = null;
  /** @type {Lifecycle|null} */
  let lifecycle = null;
  let apiKey = "";
  let endpoint = "";
  let coreStatus = null;
  /** The core answers (false before it has loaded and after it stopped). */
  let coreLive = false;
  let isReady = false;
  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // a page that never awaits ready must not see an unhandled rejection
  /** Event ids beaconed since the page was last visible: one beacon per terminal close. */
  const beaconed = new Set();

  function report(code, message) {
    log("error", message);
    emitter.emit("error", { code, message });
  }

  /** Run `fn` (a public call); anything it throws becomes an `error` event and `fallback`. */
  function guarded(name, fallback, fn) {
    try {
      if (!queue) throw new InputError("not_initialised", `revu.${name}: call revu.init first`);
      return fn();
    } catch (err) {
      try {
        if (err instanceof InputError) report(err.code, err.message);
        else report(`${name.replace(".", "_")}_failed`, `revu.${name} failed: ${err && err.message ? err.message : err}`);
      } catch (_) {
        // reporting itself must never throw into the page
      }
      return fallback;
    }
  }

  function openStore(options) {
    if (options.storage === "memory") return new MemoryStore();
    try {
      return new LocalStorageStore(options.storageKey ?? "revu");
    } catch (err) {
      report("storage_unavailable", `localStorage unavailable (${err && err.message}); running memory-only: events will not survive a reload`);
      return new MemoryStore();
    }
  }

  /** PII at rest needs a non-extractable key in IndexedDB; without one, PII stays in memory. */
  async function openVault(options, store) {
    if (!store.durable) return queue.setVault(null, nowMs());
    try {
      const keyStore = await IndexedDbKeyStore.open(`${options.storageKey ?? "revu"}-vault`);
      await queue.setVault(await PiiVault.open({ keyStore }), nowMs());
    } catch (err) {
      log("warn", `no PII vault (${err && err.message}); events flagged pii are kept in memory only`);
      await queue.setVault(null, nowMs());
    }
  }

  /**
   * The consent state to start with: the page's init option, else what it
   * chose on an earlier visit, else granted. An invalid value is reported and
   * makes the state "unknown": nothing stored is purged or sent, and new
   * events are held in memory until the page calls revu.consent().
   */
  function startingConsent(options, stored) {
    if ("consent" in options) {
      const problem = consentProblem(options.consent);
      if (!problem) return consentCopy(options.consent);
      report("invalid_consent", `revu.init: ${problem}; consent is unknown until revu.consent() is called (nothing is sent or purged meanwhile)`);
      return UNKNOWN_CONSENT;
    }
    if (stored === null || stored === undefined) return "granted";
    const problem = consentProblem(stored);
    if (!problem) return consentCopy(stored);
    report("corrupt_consent", "the stored consent state is unreadable; consent is unknown until revu.consent() is called (nothing is sent or purged meanwhile)");
    return UNKNOWN_CONSENT;
  }

  function onTerminal(reason) {
    if (!queue) return;
    const batch = terminalBatch(queue, { apiKey, exclude: beaconed, nowMs: nowMs() });
    if (!batch) return;
    const queued = sendBeacon(endpoint, batch.body);
    if (queued) for (const id of batch.ids) beaconed.add(id);
    log(queued ? "info" : "warn", `${reason}: beacon of ${batch.ids.length} events ${queued ? "queued" : "refused"}`);
    driver.push({ type: "beaconed", event_ids: batch.ids, queued });
  }

  function coreLost() {
    coreLive = false;
    isReady = false;
    queue.selfGoverned = true;
  }

  function init(options) {
    try {
      if (queue) throw new InputError("already_initialised", "revu.init was already called; later calls are ignored");
      const opts = readInitOptions(options);
      debug = opts.debug === true || opts.debug === "verbose";
      const store = openStore(opts);
      apiKey = opts.apiKey;
      const pending = new QueueStore({
        store,
        rules: rulesFor(opts),
        onStorageFailure: (operation, err) => {
          log("warn", `storage ${operation} failed; running memory-only`, err);
          if (driver) driver.push({ type: "storage_failed", operation, error: String(err && err.message ? err.message : err).slice(0, 200) });
        },
      });
      const stored = pending.load(nowMs());
      queue = pending;
      const rulesProblem = storedRulesProblem(stored.rules);
      if (rulesProblem) report("corrupt_rules", `the stored rules are corrupt (${rulesProblem}); using this SDK's defaults and the page's options`);
      const consent = startingConsent(opts, stored.consent);
      queue.setConsent(consent);
      if (consent !== UNKNOWN_CONSENT) queue.guard("write", () => store.putConsent(consent));
      for (const [reason, n] of Object.entries(queue.quarantinedBeforeStart)) {
        log("warn", `${n} stored value(s) quarantined (${reason}); revu.outbox.entries() lists them`);
      }
      endpoint = String(opts.host ?? queue.rules.defaultHost).replace(/\/+$/, "") + queue.rules.eventsPath;
      if (!store.durable) log("warn", "running memory-only: events will not survive a reload");
      driver = new Driver({
        queue,
        emitter,
        log,
        clock: { nowMs, jitter, soon, timers: new Timers() },
        post: sendRequest,
        onStatus: (status) => {
          coreStatus = status;
        },
        onCoreLost: coreLost,
      });
      lifecycle = new Lifecycle({
        onTerminal,
        onVisible: () => beaconed.clear(),
        onOnline: () => driver.push({ type: "went_online" }),
        onOffline: () => driver.push({ type: "went_offline" }),
      });
      lifecycle.install();
      startCore({ ...opts, debug: debug, consent: consent === UNKNOWN_CONSENT ? "denied" : consent }, store, openVault(opts, store));
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report("init_failed", `revu.init failed: ${err && err.message ? err.message : err}`);
    }
  }

  async function startCore(options, store, vaultReady) {
    try {
      let base = options.assetsUrl ?? env.scriptUrl;
      if (!base) throw new Error("cannot tell where revu.js was loaded from; pass assetsUrl to init");
      const core = await (env.loadCore ?? loadCore)(new URL(".", base).href);
      const started = JSON.parse(await core.start(JSON.stringify(options)));
      if (!started.ok) throw new InputError("invalid_options", `revu.init: ${started.error}`);
      debug = started.options.debug;
      await vaultReady; // sealed records from earlier pages are opened before the core sees the queue
      queue.selfGoverned = false;
      coreLive = true;
      const { queued, dead } = queue.snapshot();
      await driver.start(core, {
        type: "restored",
        now_ms: nowMs(),
        records: queued,
        dead_letters: dead,
        durable: queue.durable,
        online: lifecycle.isOnline(),
        dropped_before_start: queue.droppedBeforeStart,
        quarantined_before_start: queue.quarantinedBeforeStart,
        repaired_before_start: queue.repairedBeforeStart,
        storage: store.kind,
        consent: queue.consent,
      });
      lifecycle.moveTerminalLast();
      if (driver.lost !== null) throw new Error(driver.lost);
      isReady = true;
      resolveReady(true);
    } catch (err) {
      coreLost();
      if (driver.lost === null) {
        report(err instanceof InputError ? err.code : "core_unavailable",
          err instanceof InputError ? err.message : `the revu core did not start (${err && err.message ? err.message : err}); events stay stored and are beaconed on page hide`);
      }
      driver.abandon();
      rejectReady(err);
    }
  }

  /** Tell the core of a captured item; from the snapshot on (same task), none is missed. */
  function announce(captured, held) {
    if (coreLive) driver.push({ type: "recorded", record: captured.raw, durable: queue.durable && !held, held });
  }

  /**
   * Store a captured item by the consent gate; returns its id, or null when
   * the consent state does not allow its category (counted, not stored).
   */
  function admit(captured) {
    const state = queue.consent;
    const held = state === UNKNOWN_CONSENT && !consentAllows(state, captured.category);
    if (!held && !consentAllows(state, captured.category)) {
      if (!coreLive) queue.droppedBeforeStart.consent++;
      announce(captured, false); // the core counts it
      log("info", `${captured.event}: not recorded, consent does not allow its category`);
      return null;
    }
    queue.append(captured, held);
    announce(captured, held);
    return captured.eventId;
  }

  function record(event, properties, options) {
    return guarded("record", null, () => {
      const now = nowMs();
      return admit(captureEvent(event, properties, options, { eventId: uuid(), nowMs: now, seq: queue.nextSeq(now), rules: queue.rules }));
    });
  }

  function flush() {
    return guarded("flush", Promise.resolve(false), () => driver.flush());
  }

  function consent(state) {
    return guarded("consent", false, () => {
      const problem = consentProblem(state);
      if (problem) throw new InputError("invalid_consent", `revu.consent: ${problem}`);
      const clean = consentCopy(state);
      const purged = queue.setConsent(clean);
      queue.guard("write", () => queue.store.putConsent(clean));
      if (purged) log("info", `consent changed: ${purged} stored items purged`);
      driver.push({ type: "consent_changed", consent: clean });
      return true;
    });
  }

  function status() {
    try {
      const shim = queue
        ? { storage: queue.store.kind, durable: queue.durable, memoryOnly: !queue.durable, consent: queue.consent, pii: queue.piiMode }
        : { storage: null, durable: false, memoryOnly: true };
      const base = coreLive && coreStatus
        ? coreStatus
        : { queued: queue ? queue.queue.size : 0, online: lifecycle ? lifecycle.isOnline() : true, ...(coreStatus ? { quarantined: coreStatus.quarantined, dropped: coreStatus.dropped } : {}) };
      return { ...base, ...shim, ready: isReady && coreLive };
    } catch (err) {
      return { ready: false, error: String(err) };
    }
  }

  function on(name, fn) {
    try {
      if (typeof name !== "string" || !name || name.length > 100) throw new TypeError("revu.on needs an event name");
      return emitter.on(name, fn);
    } catch (err) {
      report("invalid_listener", `revu.on: ${err && err.message}`);
      return () => {};
    }
  }

  const outbox = {
    /** Durable, ordered-per-stream, retried write; returns the entry or null on bad input. */
    enqueue(spec) {
      return guarded("outbox.enqueue", null, () => {
        const now = nowMs();
        const captured = captureMutation(spec, {
          eventId: uuid(), idempotencyKey: uuid(), nowMs: now, seq: queue.nextSeq(now), rules: queue.rules,
          baseUrl: globalThis.location ? location.href : undefined,
        });
        admit(captured);
        return { id: captured.eventId, idempotencyKey: captured.mutation.idempotency_key, stream: captured.stream, status: "pending" };
      });
    },
    /** Queued, dead-lettered and quarantined items (events and mutations), in clear. */
    entries() {
      return guarded("outbox.entries", [], () => queue.entries());
    },
    /** Requeue a dead letter; resolves true once acked, false if it fails for good again. */
    retry(id) {
      return guarded("outbox.retry", Promise.resolve(false), () =>
        driver.waitFor((flushId) => ({ type: "dead_letter_retried", event_id: String(id).slice(0, 200), flush_id: flushId })));
    },
    /** Forget a dead letter (after the app rolled back what it showed) or a quarantined value. */
    drop(id) {
      return guarded("outbox.drop", false, () => {
        const key = String(id).slice(0, 300);
        if (queue.dropQuarantined(key)) return true;
        driver.push({ type: "dead_letter_dropped", event_id: key.slice(0, 200) });
        return true;
      });
    },
    /** `fn(failure)` for every item that fails for good: undo optimistic UI there. */
    onRollback(fn) {
      return on("outbox:failed", fn);
    },
  };

  return { init, record, flush, consent, status, on, outbox, ready, version: VERSION };
}

if (typeof window !== "undefined" && !window.revu?.version) {
  const script = typeof document !== "undefined" ? document.currentScript : null;
  window.revu = createRevu({ scriptUrl: script && script.src ? script.src : undefined });
}
