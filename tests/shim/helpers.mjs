// Test helpers: the record flow of index.js (capture, consent gate, queue)
// against a memory store, without a browser.
import { captureEvent, captureMutation } from "../../js_shim/capture.js";
import { uuid } from "../../js_shim/clock.js";
import { consentAllows } from "../../js_shim/consent.js";
import { QueueStore } from "../../js_shim/queue_store.js";
import { BOOTSTRAP_RULES } from "../../js_shim/rules.js";
import { MemoryStore } from "../../js_shim/storage/memory.js";
import { terminalBatch } from "../../js_shim/terminal.js";

export const RULES = BOOTSTRAP_RULES;

/** A MemoryStore standing in for a durable one (localStorage). */
export function durableStore() {
  const store = new MemoryStore();
  store.durable = true;
  return store;
}

/** A key store in memory, standing in for IndexedDB under Node. */
export function memoryKeyStore() {
  const keys = new Map();
  return {
    getKey: async (id) => keys.get(id) ?? null,
    putKey: async (id, key) => {
      if (!keys.has(id)) keys.set(id, key);
      return keys.get(id);
    },
    deleteKey: async (id) => keys.delete(id),
  };
}

/**
 * @returns {{queue: QueueStore, store: MemoryStore, failures: Array, record: Function, enqueue: Function, beacon: Function}}
 */
export function setup({ store = durableStore(), rules = RULES, consent = "granted", now = 0 } = {}) {
  const failures = [];
  const queue = new QueueStore({ store, rules, consent, onStorageFailure: (op, err) => failures.push([op, String(err)]) });
  queue.load(now);
  queue.setConsent(consent);
  const admit = (captured) => {
    const held = queue.consent === "unknown" && !consentAllows("unknown", captured.category);
    if (!held && !consentAllows(queue.consent, captured.category)) return { ...captured, allowed: false };
    queue.append(captured, held);
    return { ...captured, allowed: true, held };
  };
  const record = (event, props, options, nowMs = 1) =>
    admit(captureEvent(event, props, options, { eventId: uuid(), nowMs, seq: queue.nextSeq(nowMs), rules: queue.rules }));
  const enqueue = (spec, nowMs = 1, baseUrl = "https://app.test/") =>
    admit(captureMutation(spec, { eventId: uuid(), idempotencyKey: uuid(), nowMs, seq: queue.nextSeq(nowMs), rules: queue.rules, baseUrl }));
  const beacon = (exclude = new Set(), nowMs = 9) => terminalBatch(queue, { apiKey: "k", exclude, nowMs });
  return { queue, store, failures, record, enqueue, beacon };
}
