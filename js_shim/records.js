// The stored format, as the shim reads it back. Every stored value is untrusted
// (another tab, an older or newer SDK, an extension, DevTools): before a value
// joins the queue mirror (and so the unload beacon), it passes the same checks
// as the core's py_src/revu/_records.py, in the same order, with the same
// reasons. tests/contract/stored_cases.json pins the two. A value that fails
// is quarantined (queue_store.js), never sent, never read as a record again.

import { utf8Length, wellFormed } from "./json_encode.js";

/** Schema versions this shim reads (the core's SCHEMA_VERSION and MIGRATIONS). */
export const SCHEMA_VERSIONS = [1];
export const SCHEMA_VERSION = 1;
export const MAX_RECORD_BYTES = 65536;
const MAX_ID_BYTES = 128;
export const MAX_RECORD_DEPTH = 34; // properties (32 levels) inside env inside the record
const METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const PRIORITIES = new Set(["high", "normal", "low"]);
const RECORD_KEYS = new Set(["v", "seq", "env", "meta", "mutation", "sealed"]);
const DEAD_KEYS = new Set([...RECORD_KEYS, "reason", "status", "attempts", "at_ms"]);

/**
 * Whether JSON text nests containers deeper than `limit` (checked before
 * parsing; same rule as the core's json_depth_exceeds).
 * @param {string} text
 * @param {number} limit
 * @returns {boolean}
 */
export function jsonDepthExceeds(text, limit) {
  let opens = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) opens++;
  }
  if (opens <= limit) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const SURROGATE_ESCAPE = /(\\*)\\u([dD][89abAB][0-9a-fA-F]{2})(?:\\u([dD][c-fC-F][0-9a-fA-F]{2}))?|(\\*)\\u([dD][c-fC-F][0-9a-fA-F]{2})/g;

/**
 * Replace every lone surrogate in JSON text by U+FFFD: a lone surrogate code
 * unit, and a `\uD800`-style escape without its pair (what JSON.stringify
 * writes for one). Same rule as the core's repair_surrogates.
 * @param {string} text
 * @returns {{text: string, repaired: boolean}}
 */
export function repairSurrogates(text) {
  let repaired = false;
  const fixed = wellFormed(text);
  if (fixed !== text) repaired = true;
  let out = fixed;
  if (out.includes("\\u") || out.includes("\\U")) {
    out = out.replace(SURROGATE_ESCAPE, (match, s1, high, low, s2) => {
      const slashes = high !== undefined ? s1 : s2;
      if (slashes.length % 2) return match; // an escaped backslash, then plain text
      if (high !== undefined && low !== undefined) return match; // a proper pair
      repaired = true;
      return `${slashes}\\ufffd`;
    });
  }
  return { text: out, repaired };
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const safeInt = (v) => Number.isSafeInteger(v) && v >= 0;

/**
 * @typedef {object} Checked
 * @property {true} ok
 * @property {object} value    the parsed record (a sealed one still sealed)
 * @property {string} text     the stored text, repaired if needed
 * @property {boolean} repaired
 */

/**
 * Check one stored value found under `id`.
 * @param {string} id        the storage id (after the prefix)
 * @param {unknown} raw      the stored string
 * @param {boolean} [dead]   a dead letter rather than a queued record
 * @returns {Checked | {ok: false, reason: string, message: string}}
 */
export function checkStored(id, raw, dead = false) {
  const bad = (reason, message) => ({ ok: false, reason, message });
  if (typeof raw !== "string") return bad("not_json", "a stored value must be a string");
  if (raw.length > MAX_RECORD_BYTES || utf8Length(raw) > MAX_RECORD_BYTES) {
    return bad("too_large", `${utf8Length(raw)} bytes, over the ${MAX_RECORD_BYTES} any record can be`);
  }
  if (jsonDepthExceeds(raw, MAX_RECORD_DEPTH)) return bad("too_deep", `nested deeper than ${MAX_RECORD_DEPTH} levels`);
  const { text, repaired } = repairSurrogates(raw);
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return bad("not_json", `not JSON: ${err.message}`);
  }
  if (!isObject(value)) return bad("not_json", "not a JSON object");
  if (!Number.isInteger(value.v) || !SCHEMA_VERSIONS.includes(value.v)) {
    return bad("unknown_version", `unknown schema version ${JSON.stringify(value.v)}`);
  }
  if (!safeInt(value.seq)) return bad("unsafe_seq", `seq ${JSON.stringify(value.seq)} is not an integer in [0, 2**53 - 1]`);
  const env = value.env;
  if (!isObject(env)) return bad("invalid_record", "record has no envelope object");
  const eventId = env.event_id;
  if (typeof eventId !== "string" || !eventId || utf8Length(eventId) > MAX_ID_BYTES) {
    return bad("invalid_record", "envelope event_id must be a string of 1 to 128 bytes");
  }
  if (eventId !== id) return bad("key_mismatch", `stored under ${JSON.stringify(id.slice(0, 80))} but its event_id is ${JSON.stringify(eventId)}`);
  const allowed = dead ? DEAD_KEYS : RECORD_KEYS;
  const unknown = Object.keys(value).filter((k) => !allowed.has(k));
  if (unknown.length) return bad("invalid_record", `unknown members ${JSON.stringify(unknown.slice(0, 5))}`);
  const problem = envelopeProblem(env) ?? metaProblem(value.meta) ?? mutationProblem(value.mutation) ?? (dead ? deadProblem(value) : null);
  if (problem) return bad("invalid_record", problem);
  return { ok: true, value, text, repaired };
}

/** @param {object} env @returns {string|null} */
function envelopeProblem(env) {
  for (const name of ["event_id", "event", "properties", "created_at"]) {
    if (!(name in env)) return `envelope lacks "${name}"`;
  }
  if (typeof env.event !== "string" || !env.event) return "envelope event is not a non-empty string";
  if (!isObject(env.properties)) return "envelope properties is not an object";
  if (!safeInt(env.created_at)) return "envelope created_at is not an integer in [0, 2**53 - 1]";
  if ("stream" in env && (typeof env.stream !== "string" || !env.stream)) return "envelope stream is not a non-empty string";
  if ("priority" in env && !PRIORITIES.has(env.priority)) return "envelope priority is not high, normal or low";
  if ("keys" in env && !(isObject(env.keys) && Object.values(env.keys).every((v) => typeof v === "string"))) {
    return "envelope keys is not an object of strings";
  }
  return null;
}

/** @param {unknown} meta @returns {string|null} */
function metaProblem(meta) {
  if (meta === undefined) return null;
  if (!isObject(meta)) return "record meta is not an object";
  if ("category" in meta && (typeof meta.category !== "string" || !meta.category)) return "meta category is not a non-empty string";
  if ("ttl_ms" in meta && !(safeInt(meta.ttl_ms) && meta.ttl_ms >= 1)) return "meta ttl_ms is not a positive integer";
  const pii = meta.pii ?? false;
  if (!(typeof pii === "boolean" || (Array.isArray(pii) && pii.every((p) => typeof p === "string")))) {
    return "meta pii is not true or a list of names";
  }
  return null;
}

/** @param {unknown} m @returns {string|null} */
function mutationProblem(m) {
  if (m === undefined || m === null) return null;
  if (!isObject(m)) return "mutation is not an object";
  if (typeof m.method !== "string" || !METHODS.has(m.method.toUpperCase())) return "mutation method must be one of DELETE, PATCH, POST, PUT";
  if (typeof m.url !== "string" || !/^https?:\/\//.test(m.url)) return "mutation url must be an absolute http(s) URL";
  if (!isObject(m.headers) || !Object.values(m.headers).every((v) => typeof v === "string")) return "mutation headers must be an object of strings";
  if (typeof m.idempotency_key !== "string" || !m.idempotency_key) return "mutation idempotency_key must be a non-empty string";
  return null;
}

/** @param {object} value @returns {string|null} */
function deadProblem(value) {
  if (typeof value.reason !== "string") return "dead letter has no reason";
  if (value.status !== undefined && value.status !== null && !Number.isInteger(value.status)) return "dead letter status is not an integer";
  if (!safeInt(value.attempts ?? 0) || !safeInt(value.at_ms ?? 0)) return "dead letter attempts/at_ms are not integers";
  return null;
}

/**
 * The stored text of a record (what capture writes; the core reads the
 * envelope's text back out of it unchanged).
 * @param {number} seq
 * @param {string} envText
 * @param {object|null} meta
 * @param {string|null} mutationText
 * @returns {string}
 */
export function recordText(seq, envText, meta, mutationText) {
  let raw = `{"v":${SCHEMA_VERSION},"seq":${seq},"env":${envText}`;
  if (meta && Object.keys(meta).length) raw += `,"meta":${JSON.stringify(meta)}`;
  if (mutationText) raw += `,"mutation":${mutationText}`;
  return `${raw}}`;
}
