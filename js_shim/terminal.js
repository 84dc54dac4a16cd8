// The unload beacon's body, built from the stored queue when there is no time
// to ask the core (pagehide, visibilitychange -> hidden). It is the core's
// request body (py_src/revu/_policy.py `batch_body`): each stored envelope's
// text with `"sent_at"` spliced in, never re-encoded; tests/contract/body_cases.json
// pins the two byte for byte. Its size is counted exactly, in UTF-8 bytes,
// against the core's published `maxBatchBytes` (within the browser's 64 KiB
// keepalive budget).

import { consentAllows } from "./consent.js";
import { utf8Length } from "./json_encode.js";

/**
 * @param {string} apiKey
 * @returns {string} `{"api_key":<key>,"batch":[`
 */
export function bodyPrefix(apiKey) {
  return `{"api_key":${JSON.stringify(apiKey)},"batch":[`;
}

/**
 * The request body for these envelope texts (same as the core's batch_body).
 * @param {string} apiKey
 * @param {string[]} envTexts
 * @param {number} nowMs
 * @returns {string}
 */
export function batchBody(apiKey, envTexts, nowMs) {
  const stamp = `,"sent_at":${nowMs}}`;
  return `${bodyPrefix(apiKey)}${envTexts.map((env) => env.slice(0, -1) + stamp).join(",")}]}`;
}

/**
 * The terminal beacon: queued events (not mutations, not held, allowed by the
 * consent state) in order, skipping `exclude`, within `maxBatchBytes`.
 * @param {import("./queue_store.js").QueueStore} queue
 * @param {{apiKey: string, exclude: Set<string>, nowMs: number}} opts
 * @returns {{ids: string[], body: string}|null}
 */
export function terminalBatch(queue, { apiKey, exclude, nowMs }) {
  const budget = queue.rules.maxBatchBytes;
  const perEvent = `,"sent_at":${nowMs}`.length + 1; // the stamp and a comma
  let bytes = utf8Length(bodyPrefix(apiKey)) + 2 - 1; // "]}", and the first event has no comma
  const ids = [];
  const texts = [];
  for (const [id, entry] of queue.queue) {
    if (entry.mutation || entry.held || exclude.has(id) || !consentAllows(queue.consent, entry.category)) continue;
    const cost = entry.bytes + perEvent;
    if (bytes + cost > budget) break;
    bytes += cost;
    ids.push(id);
    texts.push(entry.env);
  }
  if (ids.length === 0) return null;
  return { ids, body: batchBody(apiKey, texts, nowMs) };
}
