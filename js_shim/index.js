// Wiring only: builds the page's `revu` object from the pieces.

import BOOTSTRAP_RULES from "./bootstrap_rules.json" with { type: "json" };
import { loadCore } from "./bridge.js";
import { Capture, InputError } from "./capture.js";
import { Timers, jitter, nowMs, soon } from "./clock.js";
import { consentProblem } from "./consent.js";
import { Driver } from "./driver.js";
import { Emitter } from "./emitter.js";
import { Lifecycle } from "./lifecycle.js";
import { createLogger } from "./log.js";
import { PiiVault } from "./pii.js";
import { IndexedDbKeyStore } from "./storage/indexeddb.js";
import { LocalStorageStore } from "./storage/local_storage.js";
import { MemoryStore } from "./storage/memory.js";
import { sendBeacon } from "./transport/beacon.js";
import { sendRequest } from "./transport/fetch_keepalive.js";

const VERSION = "0.1.0";

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
  /** @type {Capture|null} */
  let capture = null;
  /** @type {Driver|null} */
  let driver = null;
  /** @type {Lifecycle|null} */
  let lifecycle = null;
  let endpoint = "";
  let coreStatus = null;
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

  /** Run `fn` (a public call); a caller mistake becomes an `error` event and `fallback`. */
  function guarded(name, fallback, fn) {
    try {
      if (!capture) throw new InputError("not_initialised", `revu.${name}: call revu.init first`);
      return fn();
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report(`${name}_failed`, `revu.${name} failed: ${err}`);
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
    if (!store.durable) return capture.setVault(null);
    try {
      const keyStore = await IndexedDbKeyStore.open(`${options.storageKey ?? "revu"}-vault`);
      await capture.setVault(await PiiVault.open({ keyStore }));
    } catch (err) {
      log("warn", `no PII vault (${err && err.message}); events flagged pii are kept in memory only`);
      await capture.setVault(null);
    }
  }

  function onTerminal(reason) {
    if (!capture) return;
    const batch = capture.terminalBatch(beaconed, nowMs());
    if (!batch) return;
    const queued = sendBeacon(endpoint, batch.body);
    if (queued) for (const id of batch.ids) beaconed.add(id);
    log(queued ? "info" : "warn", `${reason}: beacon of ${batch.ids.length} events ${queued ? "queued" : "refused"}`);
    driver.push({ type: "beaconed", event_ids: batch.ids, queued });
  }

  function init(options) {
    try {
      if (capture) throw new InputError("already_initialised", "revu.init was already called; later calls are ignored");
      if (!options || typeof options !== "object") throw new InputError("invalid_options", "revu.init needs an options object");
      if (typeof options.apiKey !== "string" || !options.apiKey.trim()) {
        throw new InputError("invalid_options", "revu.init: apiKey must be a non-empty string");
      }
      debug = options.debug === true;
      const store = openStore(options);
      capture = new Capture({
        store,
        rules: BOOTSTRAP_RULES,
        apiKey: options.apiKey,
        onStorageFailure: (operation, err) => {
          log("warn", `storage ${operation} failed; running memory-only`, err);
          driver.push({ type: "storage_failed", operation, error: String(err && err.message ? err.message : err) });
        },
      });
      const stored = capture.load();
      if (stored.rules && typeof stored.rules === "object") capture.rules = { ...BOOTSTRAP_RULES, ...stored.rules };
      // The page's explicit choice wins; else what it chose on an earlier visit; else granted.
      let consent = options.consent ?? stored.consent ?? "granted";
      if (consentProblem(consent)) {
        report("invalid_consent", `revu.init: ${consentProblem(consent)}; using "denied" until revu.consent() is called`);
        consent = "denied";
      }
      capture.setConsent(consent);
      endpoint = String(options.host ?? capture.rules.defaultHost).replace(/\/+$/, "") + capture.rules.eventsPath;
      if (!store.durable) log("warn", "running memory-only: events will not survive a reload");
      driver = new Driver({
        capture,
        emitter,
        log,
        clock: { nowMs, jitter, soon, timers: new Timers() },
        post: sendRequest,
        onStatus: (status) => {
          coreStatus = status;
        },
      });
      lifecycle = new Lifecycle({
        onTerminal,
        onVisible: () => beaconed.clear(),
        onOnline: () => driver.push({ type: "went_online" }),
        onOffline: () => driver.push({ type: "went_offline" }),
      });
      lifecycle.install();
      startCore({ ...options, consent }, store, openVault(options, store));
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report("init_failed", `revu.init failed: ${err}`);
    }
  }

  async function startCore(options, store, vaultReady) {
    try {
      const assetsUrl = options.assetsUrl ?? env.scriptUrl;
      if (!assetsUrl) throw new Error("cannot tell where revu.js was loaded from; pass assetsUrl to init");
      const core = await (env.loadCore ?? loadCore)(new URL(".", assetsUrl).href);
      const started = JSON.parse(await core.start(JSON.stringify(options)));
      if (!started.ok) throw new InputError("invalid_options", `revu.init: ${started.error}`);
      debug = started.options.debug;
      await vaultReady; // sealed records from earlier pages are opened before the core sees the queue
      capture.coreLive = true;
      const { queued, dead } = capture.snapshot();
      await driver.start(core, {
        type: "restored",
        now_ms: nowMs(),
        records: queued,
        dead_letters: dead,
        durable: capture.durable,
        online: lifecycle.isOnline(),
        dropped_before_start: capture.droppedBeforeStart,
        storage: store.kind,
        consent: capture.consent,
      });
      lifecycle.moveTerminalLast();
      isReady = true;
      resolveReady(true);
    } catch (err) {
      report(err instanceof InputError ? err.code : "core_unavailable",
        err instanceof InputError ? err.message : `the revu core did not start (${err}); events stay stored and are beaconed on page hide`);
      driver.abandon();
      rejectReady(err);
    }
  }

  /** Tell the core of a captured item; from the snapshot on (same task), none is missed. */
  function announce({ record, durable }) {
    if (capture.coreLive) driver.push({ type: "recorded", record, durable });
  }

  function record(event, properties, options) {
    return guarded("record", null, () => {
      const captured = capture.record(event, properties, options, nowMs());
      announce(captured); // a consent-blocked event too: the core counts it
      if (!captured.allowed) {
        log("info", `revu.record("${event}"): not recorded, consent does not allow its category`);
        return null;
      }
      return captured.eventId;
    });
  }

  function flush() {
    return guarded("flush", Promise.resolve(false), () => driver.flush());
  }

  function consent(state) {
    return guarded("consent", false, () => {
      const problem = consentProblem(state);
      if (problem) throw new InputError("invalid_consent", `revu.consent: ${problem}`);
      const purged = capture.setConsent(state);
      capture.guard("write", () => capture.store.putConsent(state));
      if (purged) log("info", `consent changed: ${purged} stored items purged`);
      driver.push({ type: "consent_changed", consent: state });
      return true;
    });
  }

  function status() {
    const shim = capture
      ? { storage: capture.store.kind, durable: capture.durable, memoryOnly: !capture.durable, consent: capture.consent, pii: capture.piiMode }
      : { storage: null, durable: false, memoryOnly: true };
    return {
      ...(coreStatus ?? { queued: capture ? capture.queue.size : 0, online: lifecycle ? lifecycle.isOnline() : true }),
      ...shim,
      ready: isReady,
    };
  }

  function on(name, fn) {
    try {
      return emitter.on(name, fn);
    } catch (err) {
      report("invalid_listener", `revu.on: ${err.message}`);
      return () => {};
    }
  }

  const outbox = {
    /** Durable, ordered-per-stream, retried write; returns the entry or null on bad input. */
    enqueue(spec) {
      return guarded("outbox.enqueue", null, () => {
        const captured = capture.recordMutation(spec, nowMs(), globalThis.location ? location.href : undefined);
        announce(captured);
        return { id: captured.eventId, idempotencyKey: captured.mutation.idempotency_key, stream: captured.stream, status: "pending" };
      });
    },
    /** Queued and dead-lettered items (events and mutations), in clear. */
    entries() {
      return guarded("outbox.entries", [], () => capture.entries());
    },
    /** Requeue a dead letter; resolves true once acked, false if it fails for good again. */
    retry(id) {
      return guarded("outbox.retry", Promise.resolve(false), () =>
        driver.waitFor((flushId) => ({ type: "dead_letter_retried", event_id: String(id), flush_id: flushId })));
    },
    /** Forget a dead letter (after the app rolled back what it showed). */
    drop(id) {
      return guarded("outbox.drop", false, () => {
        driver.push({ type: "dead_letter_dropped", event_id: String(id) });
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
