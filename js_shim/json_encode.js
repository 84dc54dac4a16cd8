// JSON text of a value the page passed, within the capture limits. The page is
// untrusted: this must survive cycles, BigInt, Symbols, functions, Proxies that
// throw on every trap, throwing getters and toJSON, 10 MB strings, 10,000-deep
// nesting, lone surrogates, NaN, Map/Set and typed arrays, and never throw
// anything but an InputError with a code.
//
// The output is what JSON.stringify writes (same members, same order, same
// escapes), except that each lone UTF-16 surrogate becomes U+FFFD and the
// limits below apply. py_src/revu/_capture.py implements the same rules;
// tests/contract/capture_cases.json pins the two.

/** A caller mistake: reported with a code, never thrown into the page. */
export class InputError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * UTF-8 length of a string without allocating (a lone surrogate counts 3,
 * as its U+FFFD replacement will).
 * @param {string} s
 * @returns {number}
 */
export function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair is 4 bytes for 2 UTF-16 units
      i++;
    } else n += 2;
  }
  return n;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `s` with each lone surrogate replaced by U+FFFD (String.prototype.toWellFormed).
 * @param {string} s
 * @returns {string}
 */
export function wellFormed(s) {
  if (typeof s.isWellFormed === "function") return s.isWellFormed() ? s : s.toWellFormed();
  return s.replace(LONE_SURROGATE, "\uFFFD");
}

const toStringTag = Object.prototype.toString;

/**
 * @typedef {object} EncodeLimits
 * @property {number} maxDepth    containers nested (the value itself is level `depth`)
 * @property {number} maxMembers  object members + array items, all levels
 * @property {number} maxBytes    UTF-8 bytes of strings, keys and numbers written
 */

/**
 * Encode `value` as JSON text within `limits`.
 * @param {unknown} value
 * @param {string} where    for error messages ("revu.record(\"x\")")
 * @param {EncodeLimits} limits
 * @param {number} [depth]  level of `value` (1: it is the top container)
 * @returns {string|undefined} undefined where JSON.stringify would write nothing
 * @throws {InputError} unserialisable, too_deep, too_many_members or too_large
 */
export function encodeJson(value, where, limits, depth = 1) {
  const state = { members: 0, bytes: 0, path: new Set() };
  try {
    return walk(value, "", depth, state, where, limits);
  } catch (err) {
    if (err instanceof InputError) throw err;
    // A throwing getter, toJSON or Proxy trap, a BigInt, a revoked Proxy, or
    // the engine's own stack limit: all mean "cannot be sent as JSON".
    let detail;
    try {
      detail = String(err && err.message).slice(0, 200);
    } catch (_) {
      detail = "an error that cannot be described";
    }
    throw new InputError("unserialisable", `${where}: not JSON-serialisable (${detail})`);
  }
}

function count(text, state, where, limits) {
  state.bytes += utf8Length(text);
  if (state.bytes > limits.maxBytes) throw new InputError("too_large", `${where}: over ${limits.maxBytes} bytes`);
  return text;
}

function encodeString(s, state, where, limits) {
  // UTF-8 bytes >= UTF-16 units: a string this long can never fit.
  if (s.length > limits.maxBytes) throw new InputError("too_large", `${where}: a string over ${limits.maxBytes} bytes`);
  return count(JSON.stringify(wellFormed(s)), state, where, limits);
}

function walk(value, key, depth, state, where, limits) {
  if ((value !== null && typeof value === "object") || typeof value === "bigint") {
    const toJSON = value.toJSON;
    if (typeof toJSON === "function") value = toJSON.call(value, key);
  }
  if (value !== null && typeof value === "object") {
    const tag = toStringTag.call(value);
    if (tag === "[object Number]") value = Number(value);
    else if (tag === "[object String]") value = String(value);
    else if (tag === "[object Boolean]") value = value.valueOf();
  }
  switch (typeof value) {
    case "string":
      return encodeString(value, state, where, limits);
    case "number":
      return Number.isFinite(value) ? count(String(value), state, where, limits) : "null";
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      throw new InputError("unserialisable", `${where}: a BigInt is not JSON-serialisable`);
    case "object":
      if (value === null) return "null";
      return container(value, depth, state, where, limits);
    default:
      return undefined; // undefined, a function, a Symbol: JSON leaves them out
  }
}

function container(value, depth, state, where, limits) {
  if (state.path.has(value)) throw new InputError("unserialisable", `${where}: a cyclic structure is not JSON-serialisable`);
  if (depth > limits.maxDepth) throw new InputError("too_deep", `${where}: nested deeper than ${limits.maxDepth} levels`);
  const isArray = Array.isArray(value);
  // Typed arrays would list every element as a key: size them first.
  const length = isArray || ArrayBuffer.isView(value) ? Number(value.length) || 0 : -1;
  if (length > limits.maxMembers) throw new InputError("too_many_members", `${where}: more than ${limits.maxMembers} members in all`);
  state.path.add(value);
  let out;
  if (isArray) {
    state.members += length;
    if (state.members > limits.maxMembers) throw new InputError("too_many_members", `${where}: more than ${limits.maxMembers} members in all`);
    const parts = new Array(length);
    for (let i = 0; i < length; i++) {
      const item = walk(value[i], String(i), depth + 1, state, where, limits);
      parts[i] = item === undefined ? "null" : item;
    }
    out = `[${parts.join(",")}]`;
  } else {
    const keys = Object.keys(value);
    state.members += keys.length;
    if (state.members > limits.maxMembers) throw new InputError("too_many_members", `${where}: more than ${limits.maxMembers} members in all`);
    const parts = [];
    for (const k of keys) {
      const name = encodeString(k, state, where, limits); // counted first, as the Python rules do
      const item = walk(value[k], k, depth + 1, state, where, limits);
      if (item !== undefined) parts.push(`${name}:${item}`);
    }
    out = `{${parts.join(",")}}`;
  }
  state.path.delete(value);
  return out;
}
