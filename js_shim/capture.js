// Capture: a page's record() or outbox.enqueue() call checked and turned into
// the record to store. Pure (ids, clock and seq come in); synchronous, because
// record() must be durable when it returns and cannot wait for Python.
//
// These are the core's capture rules (py_src/revu/_capture.py), with the
// limits the core publishes (rules.js): tests/contract/capture_cases.json pins
// the two implementations byte for byte. Storing is queue_store.js's job.

import { InputError, encodeJson, utf8Length, wellFormed } from "./json_encode.js";
import { recordText } from "./records.js";

export { InputError, utf8Length };

/** @typedef {import("./types.js").Rules} Rules */

const OPTION_KEYS = new Set(["stream", "priority", "keys", "category", "ttlMs", "pii"]);
const MUTATION_KEYS = new Set(["method", "url", "body", "headers", "idempotencyKey", "stream"]);
const METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * @typedef {object} Captured
 * @property {string} eventId
 * @property {string} raw          the stored value: {"v","seq","env"[,"meta"][,"mutation"]}
 * @property {string} envText      the envelope's JSON text (what the wire carries)
 * @property {number} bytes        UTF-8 size of the envelope (plus the mutation)
 * @property {number} seq
 * @property {object|null} meta    stored flags (category, ttl_ms, pii)
 * @property {object|null} mutation
 * @property {string} event        the event name ("$mutation" for a mutation)
 * @property {string|null} stream
 * @property {string} category     consent category
 * @property {string} priority
 */

/**
 * Own, plain reads of an options-like object: a Proxy or a getter that throws
 * becomes an InputError with `code`.
 * @param {unknown} value
 * @param {Set<string>} allowed
 * @param {string} code
 * @param {string} where
 * @returns {Record<string, unknown>|null}
 */
function readObject(value, allowed, code, where) {
  if (value === undefined || value === null) return null;
  try {
    if (typeof value !== "object" || Array.isArray(value)) throw new InputError(code, `${where}: must be an object`);
    const out = {};
    for (const key of Object.keys(value)) {
      if (!allowed.has(key)) throw new InputError(code, `${where}: unknown field "${String(key).slice(0, 40)}"`);
      out[key] = value[key];
    }
    return out;
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(code, `${where}: cannot be read (${safeMessage(err)})`);
  }
}

function safeMessage(err) {
  try {
    return String(err && err.message).slice(0, 200);
  } catch (_) {
    return "unreadable error";
  }
}

/**
 * @param {unknown} value @param {string} name @param {string} where @param {Rules} rules
 * @param {string} code
 * @returns {string}
 */
function optionString(value, name, where, rules, code = "invalid_options") {
  if (typeof value !== "string" || !value || value.length > rules.maxOptionBytes || utf8Length(value) > rules.maxOptionBytes) {
    throw new InputError(code, `${where}: ${name} must be a string of 1 to ${rules.maxOptionBytes} bytes`);
  }
  return wellFormed(value);
}

/**
 * record()'s options: envelope fields and stored flags.
 * @param {unknown} options @param {string} where @param {Rules} rules
 * @returns {{extra: {stream?: string, priority?: string, keys?: Record<string, string>}, meta: object}}
 */
function checkOptions(options, where, rules) {
  try {
    return readOptions(options, where, rules);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError("invalid_options", `${where}: options cannot be read (${safeMessage(err)})`);
  }
}

/** @param {unknown} options @param {string} where @param {Rules} rules */
function readOptions(options, where, rules) {
  const extra = {};
  const meta = {};
  const o = readObject(options, OPTION_KEYS, "invalid_options", `${where}: options`);
  if (!o) return { extra, meta };
  const bad = (msg) => new InputError("invalid_options", `${where}: ${msg}`);
  if (o.stream !== undefined && o.stream !== null) extra.stream = optionString(o.stream, "stream", where, rules);
  if (o.priority !== undefined && o.priority !== null) {
    if (!rules.priorities.includes(o.priority)) throw bad('priority must be "high", "normal" or "low"');
    extra.priority = o.priority;
  }
  if (o.keys !== undefined && o.keys !== null) {
    const keys = readObject(o.keys, { has: () => true }, "invalid_options", `${where}: keys`);
    const names = Object.keys(keys);
    if (names.length > rules.maxKeys) throw bad(`keys must be an object of at most ${rules.maxKeys} strings`);
    extra.keys = {};
    for (const name of names) {
      extra.keys[optionString(name, "a key name", where, rules)] = optionString(keys[name], "a key value", where, rules);
    }
  }
  if (o.category !== undefined && o.category !== null) {
    const category = optionString(o.category, "category", where, rules);
    if (category !== rules.defaultCategory) meta.category = category;
  }
  if (o.ttlMs !== undefined && o.ttlMs !== null) {
    if (!Number.isSafeInteger(o.ttlMs) || o.ttlMs < 1) throw bad("ttlMs must be a positive integer");
    meta.ttl_ms = o.ttlMs;
  }
  if (o.pii !== undefined && o.pii !== null && o.pii !== false) {
    if (o.pii === true) meta.pii = true;
    else if (Array.isArray(o.pii) && o.pii.length > 0 && o.pii.length <= rules.maxPiiNames) {
      meta.pii = Array.from(o.pii, (name) => optionString(name, "a pii name", where, rules));
    } else throw bad(`pii must be true or a list of 1 to ${rules.maxPiiNames} property names`);
  }
  return { extra, meta };
}

/**
 * Check a record() call and build its record.
 * @param {unknown} event
 * @param {unknown} properties
 * @param {unknown} options
 * @param {{eventId: string, nowMs: number, seq: number, rules: Rules}} ctx
 * @returns {Captured}
 * @throws {InputError} invalid_event, invalid_properties, invalid_options,
 *   unserialisable, too_deep, too_many_members or too_large; nothing is stored
 */
export function captureEvent(event, properties, options, { eventId, nowMs, seq, rules }) {
  if (typeof event !== "string" || !event || event.length > rules.maxNameBytes || utf8Length(event) > rules.maxNameBytes) {
    throw new InputError("invalid_event", `revu.record: event name must be a string of 1 to ${rules.maxNameBytes} bytes`);
  }
  const name = wellFormed(event);
  const where = `revu.record(${JSON.stringify(name.slice(0, 40))})`;
  if (properties === undefined || properties === null) properties = {};
  let plain;
  try {
    plain = typeof properties === "object" && !Array.isArray(properties);
  } catch (err) {
    throw new InputError("invalid_properties", `${where}: properties cannot be read (${safeMessage(err)})`);
  }
  if (!plain) throw new InputError("invalid_properties", `${where}: properties must be a plain object`);
  const { extra, meta } = checkOptions(options, where, rules);
  const props = encodeJson(properties, where, { maxDepth: rules.maxDepth, maxMembers: rules.maxMembers, maxBytes: rules.maxEventBytes });
  if (typeof props !== "string" || props[0] !== "{") {
    throw new InputError("invalid_properties", `${where}: properties did not serialise to an object`);
  }
  let envText = `{"event_id":${JSON.stringify(eventId)},"event":${JSON.stringify(name)},"properties":${props},"created_at":${nowMs}`;
  if (extra.stream !== undefined) envText += `,"stream":${JSON.stringify(extra.stream)}`;
  if (extra.priority !== undefined) envText += `,"priority":${JSON.stringify(extra.priority)}`;
  if (extra.keys !== undefined) envText += `,"keys":${JSON.stringify(extra.keys)}`;
  envText += "}";
  const bytes = utf8Length(envText);
  if (bytes > rules.maxEventBytes) throw new InputError("too_large", `${where}: ${bytes} bytes, over maxEventBytes=${rules.maxEventBytes}`);
  const stored = Object.keys(meta).length ? meta : null;
  return {
    eventId,
    raw: recordText(seq, envText, stored, null),
    envText,
    bytes,
    seq,
    meta: stored,
    mutation: null,
    event: name,
    stream: extra.stream ?? null,
    category: meta.category ?? rules.defaultCategory,
    priority: extra.priority ?? "normal",
  };
}

/**
 * Check an outbox.enqueue(spec) call and build its record. A relative `url`
 * is resolved against `baseUrl` (the page).
 * @param {unknown} spec
 * @param {{eventId: string, idempotencyKey: string, nowMs: number, seq: number, rules: Rules, baseUrl?: string}} ctx
 * @returns {Captured}
 * @throws {InputError} invalid_mutation, unserialisable, too_deep, too_many_members, too_large
 */
export function captureMutation(spec, ctx) {
  try {
    return readMutation(spec, ctx);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError("invalid_mutation", `revu.outbox.enqueue: the spec cannot be read (${safeMessage(err)})`);
  }
}

/** @param {unknown} spec @param {{eventId: string, idempotencyKey: string, nowMs: number, seq: number, rules: Rules, baseUrl?: string}} ctx @returns {Captured} */
function readMutation(spec, { eventId, idempotencyKey, nowMs, seq, rules, baseUrl }) {
  const where = "revu.outbox.enqueue";
  const s = readObject(spec, MUTATION_KEYS, "invalid_mutation", where);
  if (!s) throw new InputError("invalid_mutation", `${where}: needs an object`);
  const bad = (msg) => new InputError("invalid_mutation", `${where}: ${msg}`);
  const method = s.method === undefined || s.method === null ? "POST" : s.method;
  if (typeof method !== "string" || !METHODS.has(method.toUpperCase())) throw bad("method must be POST, PUT, PATCH or DELETE");
  if (typeof s.url !== "string" || !s.url || s.url.length > rules.maxUrlBytes) {
    throw bad(`url must be a string of at most ${rules.maxUrlBytes} bytes`);
  }
  let url;
  try {
    url = new URL(wellFormed(s.url), baseUrl).href;
  } catch (_) {
    throw bad("url is not a URL");
  }
  if (!/^https?:\/\//.test(url) || utf8Length(url) > rules.maxUrlBytes) {
    throw bad(`url must be an absolute http(s) URL of at most ${rules.maxUrlBytes} bytes`);
  }
  const headers = readObject(s.headers, { has: () => true }, "invalid_mutation", `${where}: headers`) ?? {};
  const names = Object.keys(headers);
  if (names.length > rules.maxHeaders || !names.every((k) => typeof headers[k] === "string")) {
    throw bad(`headers must be an object of at most ${rules.maxHeaders} strings`);
  }
  const key = s.idempotencyKey === undefined || s.idempotencyKey === null
    ? idempotencyKey
    : optionString(s.idempotencyKey, "idempotencyKey", where, rules, "invalid_mutation");
  const stream = s.stream === undefined || s.stream === null ? null : optionString(s.stream, "stream", where, rules, "invalid_mutation");
  const limits = { maxDepth: rules.maxDepth, maxMembers: rules.maxMembers, maxBytes: rules.maxEventBytes };
  const body = encodeJson(s.body === undefined ? null : s.body, where, limits);
  const headersText = encodeJson(headers, where, limits);
  const mutationText = `{"method":${JSON.stringify(method.toUpperCase())},"url":${JSON.stringify(url)},"body":${body ?? "null"},` +
    `"headers":${headersText},"idempotency_key":${JSON.stringify(key)}}`;
  const envText = `{"event_id":${JSON.stringify(eventId)},"event":"$mutation","properties":{},"created_at":${nowMs}` +
    (stream ? `,"stream":${JSON.stringify(stream)}` : "") + "}";
  const bytes = utf8Length(envText) + utf8Length(mutationText);
  if (bytes > rules.maxEventBytes) throw new InputError("too_large", `${where}: ${bytes} bytes, over maxEventBytes=${rules.maxEventBytes}`);
  const mutation = JSON.parse(mutationText);
  return {
    eventId,
    raw: recordText(seq, envText, null, mutationText),
    envText,
    bytes,
    seq,
    meta: null,
    mutation,
    event: "$mutation",
    stream,
    category: rules.necessaryCategory,
    priority: "normal",
  };
}
