// Wiring only: builds the page's `revu` object from the pieces.
//
// Every public call is a trust boundary: whatever the page passes (or however
// it calls), nothing throws into the page; a mistake becomes an `error` event
// and a documented fallback value (see README "What revu does with bad input").
//
// Tabs: every tab captures durably; one tab per origin leads (tabs.js) and
// runs the core in its Worker. A follower never starts Pyodide: the leader
// learns of its records from storage (`storage` events), sends them, and
// answers its flushes; the follower shows the leader's status. If the leader
// goes (closed, crashed), the next tab takes over and adopts the stored queue.

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
import { Tabs, tabsAvailable } from "./tabs.js";
import { terminalBatch } from "./terminal.js";
import { sendBeacon } from "./transport/beacon.js";
import { sendRequest } from "./transport/fetch_keepalive.js";

const VERSION = "0.1.0";
/** init() options: bounded like any page input (and passed to the core as JSON). */
const OPTION_LIMITS = { maxDepth: 8, maxMembers: 1000, maxBytes: 100000 };
const STORAGE_KEY = /^[A-Za-z0-9_-]{1,64}$/;
/** How long a start may take before it counts as failed (each asset has its own limit too). */
const START_TIMEOUT_MS = 60000;
/** After a failed start: tries again when the browser comes online, and after these delays. */
const RESTART_DELAYS_MS = [5000, 30000, 120000];
/** A request another tab may still have in flight: its timeout plus this. */
const IN_FLIGHT_GRACE_MS = 2000;
/** How long a beacon counts as in flight (browsers give keepalive requests about this long). */
const BEACON_IN_FLIGHT_MS = 10000;
/** How often a leader checks which tabs are alive (their presence locks). */
const TABS_REFRESH_MS = 2000;

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
  if (opts.tabs !== undefined && typeof opts.tabs !== "boolean") throw bad("tabs must be true or false");
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
  /** `debug: "verbose"`: also one line per recorded event. */
  let verbose = false;
  const log = createLogger(() => debug);
  const tabId = uuid();
  /** @type {QueueStore|null} */
  let queue = null;
  /** @type {Driver|null} */
  let driver = null;
  /** @type {Lifecycle|null} */
  let lifecycle = null;
  /** @type {Tabs|null} */
  let tabs = null;
  /** "leader" (runs the core) or "follower" (another tab does); null before init. */
  let role = null;
  let options = null;
  let store = null;
  let vaultReady = null;
  let apiKey = "";
  let endpoint = "";
  let coreStatus = null;
  /** The core answers (false before it has loaded and after it stopped). */
  let coreLive = false;
  let isReady = false;
  let starting = false;
  let restarts = 0;
  let restartTimer = null;
  let resolveReady;
  let rejectReady;
  let readySettled = false;
  const ready = new Promise((resolve, reject) => {
    resolveReady = (v) => {
      readySettled = true;
      resolve(v);
    };
    rejectReady = (e) => {
      readySettled = true;
      reject(e);
    };
  });
  ready.catch(() => {}); // a page that never awaits ready must not see an unhandled rejection
  /** Event ids beaconed since the page was last visible: one beacon per terminal close. */
  const beaconed = new Set();
  /**
   * Leader: what its requests (and beacons) may still carry, batch id ->
   * {ids, until}. An id leaves when its record is deleted (acknowledged, or
   * dropped); an entry when `until` (its timeout and a grace) has passed. A
   * leader that follows this one (this page crashed, or closed while a
   * keepalive request flew) waits for these before sending them again.
   */
  const inFlight = new Map();
  /** Leader: the other tabs alive (presence locks, hello/bye). */
  const others = new Set();
  /** Follower: flushes waiting for the leader, flush id -> {resolve, records}. */
  const remoteFlushes = new Map();
  /** Follower: the leader's last status, and whether its core is live. */
  let leaderStatus = null;
  let leaderReady = false;
  let statusTimer = null;

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

  function openStore(opts) {
    if (opts.storage === "memory") return new MemoryStore();
    try {
      return new LocalStorageStore(opts.storageKey ?? "revu");
    } catch (err) {
      report("storage_unavailable", `localStorage unavailable (${err && err.message}); running memory-only: events will not survive a reload`);
      return new MemoryStore();
    }
  }

  /** PII at rest needs a non-extractable key in IndexedDB; without one, PII stays in memory. */
  async function openVault(opts) {
    if (!store.durable) return queue.setVault(null, nowMs());
    try {
      const keyStore = await IndexedDbKeyStore.open(`${opts.storageKey ?? "revu"}-vault`);
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
  function startingConsent(opts, stored) {
    if ("consent" in opts) {
      const problem = consentProblem(opts.consent);
      if (!problem) return consentCopy(opts.consent);
      report("invalid_consent", `revu.init: ${problem}; consent is unknown until revu.consent() is called (nothing is sent or purged meanwhile)`);
      return UNKNOWN_CONSENT;
    }
    if (stored === null || stored === undefined) return "granted";
    const problem = consentProblem(stored);
    if (!problem) return consentCopy(stored);
    report("corrupt_consent", "the stored consent state is unreadable; consent is unknown until revu.consent() is called (nothing is sent or purged meanwhile)");
    return UNKNOWN_CONSENT;
  }

  // -- unload ------------------------------------------------------------------

  function onTerminal(reason) {
    if (!queue) return;
    if (role === "follower") {
      // The leader has (or will adopt) everything this tab stored: a follower
      // never beacons, so that no stored event is in two requests at once.
      tabs.post({ type: "bye" });
      return;
    }
    if (others.size > 0) {
      log("info", `${reason}: ${others.size} other tab(s) open; the next leader sends what is queued (no beacon)`);
      return;
    }
    const exclude = new Set(beaconed);
    for (const { ids } of inFlight.values()) for (const id of ids) exclude.add(id); // a keepalive request carries them
    const now = nowMs();
    const batch = terminalBatch(queue, { apiKey, exclude, nowMs: now });
    if (!batch) return;
    const queued = sendBeacon(endpoint, batch.body);
    const until = now + BEACON_IN_FLIGHT_MS + IN_FLIGHT_GRACE_MS;
    if (queued) {
      for (const id of batch.ids) beaconed.add(id);
      inFlight.set(`beacon:${now}`, { ids: new Set(batch.ids), until });
      saveInFlight();
    }
    log(queued ? "info" : "warn", `${reason}: beacon of ${batch.ids.length} events ${queued ? "queued" : "refused"}`);
    driver.push({ type: "beaconed", event_ids: batch.ids, queued, until_ms: queued ? until : 0 });
  }

  /** A send the core decided before it heard of a beacon that still carries some of its events. */
  function beaconCarries(cmd) {
    if (cmd.kind !== "events") return false;
    const now = nowMs();
    for (const [key, { ids, until }] of inFlight) {
      if (!key.startsWith("beacon:") || until <= now) continue;
      if (cmd.event_ids.some((id) => ids.has(id))) return true;
    }
    return false;
  }

  /** Leader: what its requests (and beacons) may still carry, stored for a leader that follows it. */
  function saveInFlight() {
    const now = nowMs();
    const value = {};
    for (const [key, { ids, until }] of inFlight) {
      if (until <= now || ids.size === 0) inFlight.delete(key);
      else for (const id of ids) value[id] = Math.max(value[id] ?? 0, until);
    }
    if (store.durable) queue.guard("write", () => store.putInFlight(value));
  }

  /** @param {string[]} ids  records that left the queue: no request needs to be waited for */
  function settledInFlight(ids) {
    let changed = false;
    for (const entry of inFlight.values()) for (const id of ids) changed = entry.ids.delete(id) || changed;
    if (changed) saveInFlight();
  }

  // -- the core ------------------------------------------------------------------

  function coreLost() {
    coreLive = false;
    isReady = false;
    queue.selfGoverned = true;
    if (tabs && role === "leader") tabs.post({ type: "lost" });
  }

  /** Whatever the core emits goes to this tab's listeners, and to the other tabs'. */
  const coreEmitter = {
    emit(name, detail) {
      emitter.emit(name, detail);
      if (tabs && role === "leader") tabs.post({ type: "emit", name, detail });
    },
  };

  function newDriver() {
    return new Driver({
      queue,
      emitter: coreEmitter,
      log,
      clock: { nowMs, jitter, soon, timers: new Timers() },
      post: sendRequest,
      onStatus: (status) => {
        coreStatus = status;
        broadcastStatus();
      },
      onCoreLost: coreLost,
      onSend: (batchId, ids, timeoutMs) => {
        inFlight.set(batchId, { ids: new Set(ids), until: nowMs() + timeoutMs + IN_FLIGHT_GRACE_MS });
        saveInFlight();
      },
      onDeleted: settledInFlight,
      skipSend: beaconCarries,
      onSendFailed: (batchId, status) => {
        // The server answered: nothing of it was stored, and nothing can still
        // arrive. A network error or a timeout says nothing of the sort (the
        // body may have reached the server; a navigation can fail a request
        // the server got): its ids stay "in flight" until its time is up.
        if (status !== null && inFlight.delete(batchId)) saveInFlight();
      },
    });
  }

  function broadcastStatus() {
    if (!tabs || role !== "leader" || statusTimer) return;
    statusTimer = setTimeout(() => {
      statusTimer = null;
      tabs.post({ type: "status", status: coreStatus, ready: isReady && coreLive });
    }, 50);
  }

  async function startCore() {
    if (starting || coreLive) return;
    starting = true;
    const startedAt = nowMs();
    try {
      const base = options.assetsUrl ?? env.scriptUrl;
      if (!base) throw new Error("cannot tell where revu.js was loaded from; pass assetsUrl to init");
      let assetsUrl;
      try {
        assetsUrl = new URL(".", new URL(base, globalThis.location ? location.href : undefined)).href;
      } catch (_) {
        throw new InputError("invalid_options", `revu.init: assetsUrl ${JSON.stringify(String(base).slice(0, 100))} is not a URL`);
      }
      const core = await (env.loadCore ?? loadCore)(assetsUrl, { timeoutMs: START_TIMEOUT_MS });
      const coreOptions = { ...options, consent: queue.consent === UNKNOWN_CONSENT ? "denied" : queue.consent };
      const started = JSON.parse(await core.start(JSON.stringify(coreOptions)));
      if (!started.ok) throw new InputError("invalid_options", `revu.init: ${started.error}`);
      await vaultReady; // sealed records from earlier pages are opened before the core sees the queue
      queue.selfGoverned = false;
      coreLive = true;
      if (driver.lost !== null) {
        const pending = driver.pending;
        driver = newDriver(); // a restart after a failed start: a fresh driver for the new core
        driver.pending = pending;
      }
      const { queued, dead } = queue.snapshot();
      const elsewhere = tabs ? store.getInFlight() : {};
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
        hidden: lifecycle.isHidden(),
        in_flight_elsewhere: elsewhere,
      });
      const network = lifecycle.network();
      if (network) driver.push({ type: "network_changed", save_data: network.saveData, effective_type: network.effectiveType });
      lifecycle.moveTerminalLast();
      if (driver.lost !== null) throw new Error(driver.lost);
      isReady = true;
      restarts = 0;
      log("info", `core ready in ${Math.round(nowMs() - startedAt)} ms (a Worker; ${queue.queue.size} queued)`);
      if (!readySettled) resolveReady(true);
      emitter.emit("ready", { role });
      broadcastStatus();
    } catch (err) {
      coreLost();
      if (driver.lost === null) {
        report(err instanceof InputError ? err.code : "core_unavailable",
          err instanceof InputError ? err.message : `the revu core did not start (${err && err.message ? err.message : err}); events stay stored and are beaconed on page hide`);
      }
      driver.abandon();
      if (!readySettled) rejectReady(err);
      if (!(err instanceof InputError)) scheduleRestart();
    } finally {
      starting = false;
    }
  }

  /** A failed start is tried again when the browser is online again, and after a while. */
  function scheduleRestart() {
    if (restartTimer || restarts >= RESTART_DELAYS_MS.length) return;
    const delay = RESTART_DELAYS_MS[restarts++];
    restartTimer = setTimeout(() => {
      restartTimer = null;
      startCore();
    }, delay);
  }

  function onOnline() {
    if (role === "leader" && !coreLive && !starting && driver && driver.lost !== null) {
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = null;
      log("info", "online again: starting the core");
      startCore();
    }
    driver.push({ type: "went_online" });
  }

  // -- tabs ---------------------------------------------------------------------

  function becomeLeader() {
    role = "leader";
    if (tabs) {
      queue.adopt(nowMs());
      tabs.post({ type: "leader" });
      refreshOthers();
      setInterval(refreshOthers, TABS_REFRESH_MS);
      // Flushes this tab asked of the old leader are now its own to answer.
      for (const [flushId, { resolve, records }] of remoteFlushes) {
        remoteFlushes.delete(flushId);
        const ids = records.map((r) => r.id);
        driver.waitFor((id) => ({ type: "flush_requested", flush_id: id, event_ids: ids })).then(resolve);
      }
    }
    log("info", `this tab leads (${tabs ? "one core for all tabs of the origin" : "every tab runs its own core"})`);
    startCore();
  }

  function refreshOthers() {
    tabs.others().then((ids) => {
      others.clear();
      for (const id of ids) others.add(id);
    }, () => {});
  }

  /** Another tab changed storage: its new records reach the leader's core this way. */
  function onStorageChange(change) {
    if (change.area === "q") {
      if (change.raw === null) queue.forget(change.id);
      else if (role === "leader") {
        const raw = queue.external(change.id, change.raw, nowMs(), (opened) => announceRaw(opened));
        if (raw) announceRaw(raw);
      }
    } else if (change.area === "d") queue.externalDead(change.id, change.raw, nowMs());
  }

  function announceRaw(raw) {
    if (coreLive) driver.push({ type: "recorded", record: raw, durable: true, held: false });
  }

  function onTabMessage(message) {
    if (role === "leader") onFollowerMessage(message);
    else onLeaderMessage(message);
  }

  function onFollowerMessage(message) {
    switch (message.type) {
      case "hello":
        others.add(message.from);
        // A tab that joins after the core started would otherwise wait for the
        // next change to learn the leader's status (and `ready`).
        broadcastStatus();
        break;
      case "bye":
        others.delete(message.from);
        break;
      case "flush": {
        const ids = [];
        for (const { id, raw } of Array.isArray(message.records) ? message.records : []) {
          ids.push(id);
          const added = queue.external(id, raw, nowMs());
          if (added) announceRaw(added);
        }
        const reply = (ok) => tabs.post({ type: "settled", to: message.from, flushId: message.flushId, ok });
        driver.waitFor((flushId) => ({ type: "flush_requested", flush_id: flushId, event_ids: ids })).then(reply);
        break;
      }
      case "consent":
        if (!consentProblem(message.state)) {
          queue.setConsent(consentCopy(message.state));
          driver.push({ type: "consent_changed", consent: consentCopy(message.state) });
        }
        break;
      case "retry":
        driver.waitFor((flushId) => ({ type: "dead_letter_retried", event_id: String(message.id).slice(0, 200), flush_id: flushId }))
          .then((ok) => tabs.post({ type: "settled", to: message.from, flushId: message.flushId, ok }));
        break;
      case "drop":
        driver.push({ type: "dead_letter_dropped", event_id: String(message.id).slice(0, 200) });
        break;
      default:
        break;
    }
  }

  function onLeaderMessage(message) {
    switch (message.type) {
      case "leader":
        // A new leader: it knows nothing of flushes asked of the old one.
        for (const [flushId, { records }] of remoteFlushes) tabs.post({ type: "flush", flushId, records });
        tabs.post({ type: "hello" });
        break;
      case "status":
        leaderStatus = message.status;
        if (message.ready && !leaderReady) {
          leaderReady = true;
          if (!readySettled) resolveReady(true);
          emitter.emit("ready", { role });
        }
        leaderReady = !!message.ready;
        break;
      case "lost":
        leaderReady = false;
        for (const { resolve } of remoteFlushes.values()) resolve(false);
        remoteFlushes.clear();
        break;
      case "emit":
        emitter.emit(message.name, message.detail);
        break;
      case "settled":
        if (message.to === tabId && remoteFlushes.has(message.flushId)) {
          remoteFlushes.get(message.flushId).resolve(message.ok === true);
          remoteFlushes.delete(message.flushId);
        }
        break;
      default:
        break;
    }
  }

  /** Follower: ask the leader, carrying this tab's queued records (it may not have seen them yet). */
  function askLeader(type, extra, records) {
    const flushId = uuid();
    return new Promise((resolve) => {
      remoteFlushes.set(flushId, { resolve, records });
      tabs.post({ type, flushId, records, ...extra });
    });
  }

  // -- public API ------------------------------------------------------------------

  function init(opts) {
    try {
      if (queue) throw new InputError("already_initialised", "revu.init was already called; later calls are ignored");
      options = readInitOptions(opts);
      debug = options.debug === true || options.debug === "verbose";
      verbose = options.debug === "verbose";
      store = openStore(options);
      apiKey = options.apiKey;
      const pending = new QueueStore({
        store,
        rules: rulesFor(options),
        onStorageFailure: (operation, err) => {
          log("warn", `storage ${operation} failed; running memory-only`, err);
          if (driver) driver.push({ type: "storage_failed", operation, error: String(err && err.message ? err.message : err).slice(0, 200) });
        },
      });
      const stored = pending.load(nowMs());
      queue = pending;
      const rulesProblem = storedRulesProblem(stored.rules);
      if (rulesProblem) report("corrupt_rules", `the stored rules are corrupt (${rulesProblem}); using this SDK's defaults and the page's options`);
      const consent = startingConsent(options, stored.consent);
      queue.setConsent(consent);
      if (consent !== UNKNOWN_CONSENT) queue.guard("write", () => store.putConsent(consent));
      for (const [reason, n] of Object.entries(queue.quarantinedBeforeStart)) {
        log("warn", `${n} stored value(s) quarantined (${reason}); revu.outbox.entries() lists them`);
      }
      endpoint = String(options.host ?? queue.rules.defaultHost).replace(/\/+$/, "") + queue.rules.eventsPath;
      log("info", `revu ${VERSION}: sending to ${endpoint}; storage ${store.kind}${store.durable ? "" : " (memory only)"}; ` +
        `consent ${typeof consent === "string" ? consent : JSON.stringify(consent)}; ${queue.queue.size} stored from earlier pages` +
        (verbose ? "; verbose: one line per event" : ""));
      if (!store.durable) log("warn", "running memory-only: events will not survive a reload");
      driver = newDriver();
      lifecycle = new Lifecycle({
        onTerminal,
        onVisible: () => beaconed.clear(),
        onOnline,
        onOffline: () => driver.push({ type: "went_offline" }),
        onHidden: (hidden) => driver.push({ type: "visibility_changed", hidden }),
        onNetwork: (n) => driver.push({ type: "network_changed", save_data: n.saveData, effective_type: n.effectiveType }),
      });
      lifecycle.install();
      vaultReady = openVault(options);
      if (store.durable && options.tabs !== false && tabsAvailable()) {
        role = "follower";
        tabs = new Tabs({ key: options.storageKey ?? "revu", tabId, onMessage: onTabMessage });
        store.watch(onStorageChange);
        tabs.post({ type: "hello" });
        tabs.elect(becomeLeader);
      } else {
        becomeLeader();
      }
    } catch (err) {
      if (err instanceof InputError) report(err.code, err.message);
      else report("init_failed", `revu.init failed: ${err && err.message ? err.message : err}`);
    }
  }

  /** Tell the core of a captured item; from the snapshot on (same task), none is missed. */
  function announce(captured, held) {
    if (role === "leader" && coreLive) driver.push({ type: "recorded", record: captured.raw, durable: queue.durable && !held, held });
  }

  /**
   * Store a captured item by the consent gate; returns its id, or null when
   * the consent state does not allow its category (counted, not stored).
   */
  function admit(captured) {
    const state = queue.consent;
    const held = state === UNKNOWN_CONSENT && !consentAllows(state, captured.category);
    if (!held && !consentAllows(state, captured.category)) {
      if (!coreLive) {
        queue.droppedBeforeStart.consent++;
        log("info", `${captured.event}: not recorded, consent does not allow "${captured.category}"`);
      }
      announce(captured, false); // the core counts it (and says so)
      return null;
    }
    const kept = queue.append(captured, held);
    announce(captured, held);
    if (verbose) {
      const where = held ? "held in memory until consent is known" : queue.durable ? `stored (${queue.store.kind})` : "kept in memory";
      log("info", `recorded ${captured.event} ${captured.eventId}: ${kept ? where : "then evicted (over maxQueue)"}`);
    }
    return captured.eventId;
  }

  function record(event, properties, opts) {
    return recordWithId(uuid(), event, properties, opts);
  }

  /** record() with an id made earlier (by the snippet's stub, so that it could return it). */
  function recordWithId(eventId, event, properties, opts) {
    return guarded("record", null, () => {
      const now = nowMs();
      return admit(captureEvent(event, properties, opts, { eventId, nowMs: now, seq: queue.nextSeq(now), rules: queue.rules }));
    });
  }

  function mine() {
    return [...queue.queue].filter(([, e]) => !e.held).map(([id, entry]) => ({ id, raw: queue.rawOf(entry) }));
  }

  function flush() {
    return guarded("flush", Promise.resolve(false), () => {
      if (role === "follower") return askLeader("flush", {}, mine());
      return driver.flush();
    });
  }

  function consent(state) {
    return guarded("consent", false, () => {
      const problem = consentProblem(state);
      if (problem) throw new InputError("invalid_consent", `revu.consent: ${problem}`);
      const clean = consentCopy(state);
      const purged = queue.setConsent(clean);
      queue.guard("write", () => queue.store.putConsent(clean));
      if (purged) log("info", `consent changed: ${purged} stored items purged`);
      if (role === "follower") tabs.post({ type: "consent", state: clean });
      else driver.push({ type: "consent_changed", consent: clean });
      return true;
    });
  }

  function status() {
    try {
      const shim = queue
        ? { storage: queue.store.kind, durable: queue.durable, memoryOnly: !queue.durable, consent: queue.consent, pii: queue.piiMode, role }
        : { storage: null, durable: false, memoryOnly: true, role };
      if (role === "follower") {
        return { ...(leaderStatus ?? { queued: queue.queue.size, online: lifecycle.isOnline() }), ...shim, ready: leaderReady };
      }
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
      return guarded("outbox.retry", Promise.resolve(false), () => {
        if (role === "follower") return askLeader("retry", { id: String(id).slice(0, 200) }, []);
        return driver.waitFor((flushId) => ({ type: "dead_letter_retried", event_id: String(id).slice(0, 200), flush_id: flushId }));
      });
    },
    /** Forget a dead letter (after the app rolled back what it showed) or a quarantined value. */
    drop(id) {
      return guarded("outbox.drop", false, () => {
        const key = String(id).slice(0, 300);
        if (queue.dropQuarantined(key)) return true;
        if (role === "follower") tabs.post({ type: "drop", id: key.slice(0, 200) });
        else driver.push({ type: "dead_letter_dropped", event_id: key.slice(0, 200) });
        return true;
      });
    },
    /** `fn(failure)` for every item that fails for good: undo optimistic UI there. */
    onRollback(fn) {
      return on("outbox:failed", fn);
    },
  };

  return { init, record, flush, consent, status, on, outbox, ready, version: VERSION, _recordWithId: recordWithId };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Take over the snippet's stub (js_shim/snippet.js): replay its queued calls in
 * order on the real instance, settle its promises with the real results, and
 * give the stub object the real methods (a page may have kept a reference).
 * @param {any} stub  window.revu as the snippet left it
 * @param {ReturnType<typeof createRevu>} real
 * @returns {any} the object to keep as window.revu
 */
export function adoptStub(stub, real) {
  const calls = Array.isArray(stub._q) ? stub._q : [];
  const { ready: realReady, _recordWithId, ...methods } = real;
  for (const call of calls) {
    try {
      const args = Array.isArray(call.a) ? call.a : [];
      switch (call.m) {
        case "init": real.init(...args); break;
        case "record": _recordWithId(typeof call.id === "string" && UUID.test(call.id) ? call.id.toLowerCase() : uuid(), ...args); break;
        case "flush": real.flush().then(call.y); break;
        case "consent": real.consent(...args); break;
        case "on": if (!call.off) call.u = real.on(...args); break;
        case "outbox.enqueue": real.outbox.enqueue(...args); break;
        case "outbox.retry": real.outbox.retry(...args).then(call.y); break;
        case "outbox.drop": real.outbox.drop(...args); break;
        default: break;
      }
    } catch (_) {
      // a replayed call never breaks the others (each real method is guarded anyway)
    }
  }
  if (typeof stub._y === "function") realReady.then(stub._y, stub._n);
  const target = stub.ready instanceof Promise ? stub : { ready: realReady };
  delete stub._q;
  return Object.assign(target, methods);
}

if (typeof window !== "undefined" && !window.revu?.version) {
  const script = typeof document !== "undefined" ? document.currentScript : null;
  const real = createRevu({ scriptUrl: script && script.src ? script.src : undefined });
  window.revu = window.revu && Array.isArray(window.revu._q) ? adoptStub(window.revu, real) : real;
}
