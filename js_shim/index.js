// Wiring only: builds the page's `revu` object from the pieces.

import BOOTSTRAP_RULES from "./bootstrap_rules.json" with { type: "json" };
import { loadCore } from "./bridge.js";
import { Capture, InputError } from "./capture.js";
import { Timers, jitter, nowMs, soon } from "./clock.js";
import { Driver } from "./driver.js";
import { Emitter } from "./emitter.js";
import { Lifecycle } from "./lifecycle.js";
import { createLogger } from "./log.js";
import { LocalStorageStore } from "./storage/local_storage.js";
import { MemoryStore } from "./storage/memory.js";
import { sendBeacon } from "./transport/beacon.js";
import { postJson } from "./transport/fetch_keepalive.js";

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

  function openStore(options) {
    if (options.storage === "memory") return new MemoryStore();
    try {
      return new LocalStorageStore(options.storageKey ?? "revu");
    } catch (err) {
      report("storage_unavailable", `localStorage unavailable (${err && err.message}); running memory-only: events will not survive a reload`);
      return new MemoryStore();
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
      if (stored && typeof stored === "object") capture.rules = { ...BOOTSTRAP_RULES, ...stored };
      endpoint = String(options.host ?? capture.rules.defaultHost).replace(/\/+$/, "") + capture.rules.eventsPath;
      if (!store.durable) log("warn", "running memory-only: events will not survive a reload");
      driver = new Driver({
        capture,
        emitter,
        log,
        clock: { nowMs, jitter, soon, timers: new Timers() },
        post: postJson,
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
      startCore(options, store);
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report("init_failed", `revu.init failed: ${err}`);
    }
  }

  async function startCore(options, store) {
    try {
      const assetsUrl = options.assetsUrl ?? env.scriptUrl;
      if (!assetsUrl) throw new Error("cannot tell where revu.js was loaded from; pass assetsUrl to init");
      const core = await (env.loadCore ?? loadCore)(new URL(".", assetsUrl).href);
      const started = JSON.parse(await core.start(JSON.stringify(options)));
      if (!started.ok) throw new InputError("invalid_options", `revu.init: ${started.error}`);
      debug = started.options.debug;
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

  function record(event, properties, options) {
    try {
      if (!capture) throw new InputError("not_initialised", "revu.record: call revu.init first");
      const { eventId, record: stored, durable } = capture.record(event, properties, options, nowMs());
      // From the snapshot on, the core hears of each record (same task as the
      // snapshot, so none falls between the two).
      if (capture.coreLive) driver.push({ type: "recorded", record: stored, durable });
      return eventId;
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report("record_failed", `revu.record failed: ${err}`);
      return null;
    }
  }

  function flush() {
    if (!driver) {
      report("not_initialised", "revu.flush: call revu.init first");
      return Promise.resolve(false);
    }
    return driver.flush();
  }

  function status() {
    const shim = capture
      ? { storage: capture.store.kind, durable: capture.durable, memoryOnly: !capture.durable }
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

  return { init, record, flush, status, on, ready, version: VERSION };
}

if (typeof window !== "undefined" && !window.revu?.version) {
  const script = typeof document !== "undefined" ? document.currentScript : null;
  window.revu = createRevu({ scriptUrl: script && script.src ? script.src : undefined });
}
