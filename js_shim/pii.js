// The only file that uses crypto.subtle.
//
// Events flagged `pii` (or the named properties of them) must never reach
// localStorage or IndexedDB in clear. They are sealed with AES-GCM under a key
// that is generated non-extractable and kept in IndexedDB as a CryptoKey
// object: script on the page can ask the browser to encrypt and decrypt with
// it, but nothing (not even this SDK) can read its bytes out, so a copy of the
// storage alone does not give the PII away.
//
// Each blob carries the id of the key that sealed it and is bound, through
// AES-GCM's additional data, to a caller-given string (the event_id): a blob
// moved to another record fails authentication instead of decrypting as that
// record's PII.

/**
 * The envelope as capture.js builds it (event_id, event, properties,
 * created_at, ...); only `properties` matters here.
 * @typedef {{properties: Record<string, unknown>} & Record<string, unknown>} Envelope
 */

const ALG = "A256GCM"; // the JOSE name (RFC 7518 §5.3) of AES-GCM with a 256-bit key
const IV_BYTES = 12; // the 96-bit IV GCM is designed for (NIST SP 800-38D §5.2.1.1)

/**
 * What {@link PiiVault#seal} returns: JSON-safe, meant to be stored inside a
 * record in place of the clear value.
 * @typedef {object} Sealed
 * @property {"A256GCM"} alg  AES-GCM, 256-bit key, 128-bit tag appended to ct
 * @property {string} kid     id of the key in the key store
 * @property {string} iv      base64 of the 12 random IV bytes
 * @property {string} ct      base64 of ciphertext || tag
 */

/**
 * Where the vault's key lives. `IndexedDbKeyStore` in browsers; tests use an
 * in-memory object with the same methods.
 * @typedef {object} KeyStore
 * @property {(id: string) => Promise<CryptoKey|null>} getKey
 * @property {(id: string, key: CryptoKey) => Promise<CryptoKey>} putKey  add-if-absent; resolves to the key stored afterwards
 * @property {(id: string) => Promise<void>} deleteKey
 */

/**
 * @param {Uint8Array} bytes
 * @returns {string}
 */
function toBase64(bytes) {
  let bin = "";
  // Chunked: String.fromCharCode(...bytes) overflows the stack on big arrays.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, i + 0x8000)));
  }
  return btoa(bin);
}

/**
 * @param {string} text
 * @param {string} what  field name for the error message
 * @returns {Uint8Array}
 */
function fromBase64(text, what) {
  let bin;
  try {
    bin = atob(text);
  } catch (_) {
    throw new Error(`sealed PII: ${what} is not base64`);
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * `crypto.subtle`, or a clear error. It is undefined outside secure contexts
 * (plain http other than localhost: https://w3c.github.io/webcrypto/#crypto-interface)
 * and in very old browsers.
 * @returns {SubtleCrypto}
 */
function subtleCrypto() {
  const c = globalThis.crypto;
  if (!c || typeof c.getRandomValues !== "function") throw new Error("PII vault: crypto is not available");
  if (!c.subtle) throw new Error("PII vault: crypto.subtle is not available (insecure context: the page must be served over https or from localhost)");
  return c.subtle;
}

/**
 * Refuse a stored key the vault would not have made. Overwriting it is not an
 * option (it may belong to a newer SDK, and whatever it sealed would be lost),
 * so the caller falls back to memory instead.
 * @param {CryptoKey} key
 * @param {string} kid
 * @returns {CryptoKey}
 */
function checkKey(key, kid) {
  const alg = key && key.algorithm;
  const ok =
    alg && alg.name === "AES-GCM" && alg.length === 256 && key.extractable === false &&
    key.usages.includes("encrypt") && key.usages.includes("decrypt");
  if (!ok) throw new Error(`PII vault: the stored key "${kid}" is not a non-extractable AES-GCM 256 encrypt/decrypt key`);
  return key;
}

/** Seals and opens PII with one non-extractable AES-GCM key. */
export class PiiVault {
  /**
   * Use {@link PiiVault.open}.
   * @param {SubtleCrypto} subtle
   * @param {CryptoKey} key
   * @param {string} kid
   */
  constructor(subtle, key, kid) {
    this.subtle = subtle;
    this.key = key;
    this.kid = kid;
  }

  /**
   * Load the key `keyId` from `keyStore`, or generate it (AES-GCM 256,
   * non-extractable, encrypt/decrypt) and store it.
   * @param {{keyStore: KeyStore, keyId?: string}} options
   * @returns {Promise<PiiVault>}
   * @throws {Error} when crypto.subtle is unavailable, the key store fails, or
   *   the stored key is not one the vault would have made
   */
  static async open({ keyStore, keyId = "pii-v1" }) {
    const subtle = subtleCrypto();
    let key = await keyStore.getKey(keyId);
    if (!key) {
      const fresh = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      // Another tab may have stored its key meanwhile: use whichever won.
      key = await keyStore.putKey(keyId, fresh);
    }
    return new PiiVault(subtle, checkKey(key, keyId), keyId);
  }

  /**
   * Encrypt `JSON.stringify(value)` under a fresh random IV, bound to `aad`.
   * What comes back out of {@link PiiVault#open} is the JSON round trip of
   * `value` (a Date becomes a string, undefined members vanish).
   * @param {unknown} value  anything JSON.stringify turns into a string
   * @param {string} aad     what the blob belongs to (the event_id); open needs the same string
   * @returns {Promise<Sealed>}
   * @throws {TypeError} when aad is not a string or value is not serialisable
   */
  async seal(value, aad) {
    if (typeof aad !== "string") throw new TypeError("PII vault: seal needs the aad string (the event_id)");
    const json = JSON.stringify(value);
    if (typeof json !== "string") throw new TypeError("PII vault: the value has no JSON form");
    // A GCM IV must never repeat under one key; 96 random bits per call keep
    // the odds negligible for far more blobs than a browser will ever seal.
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const enc = new TextEncoder();
    const ct = await this.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: enc.encode(aad) },
      this.key,
      enc.encode(json),
    );
    return { alg: ALG, kid: this.kid, iv: toBase64(iv), ct: toBase64(new Uint8Array(ct)) };
  }

  /**
   * Decrypt and authenticate a blob made by {@link PiiVault#seal}.
   * @param {Sealed} sealed
   * @param {string} aad  the string given to seal
   * @returns {Promise<unknown>} the sealed value
   * @throws {Error} when the blob is malformed, was sealed by another key, was
   *   tampered with, or `aad` differs from the one it was sealed with
   */
  async open(sealed, aad) {
    if (typeof aad !== "string") throw new TypeError("PII vault: open needs the aad string (the event_id)");
    if (!sealed || typeof sealed !== "object" || sealed.alg !== ALG) {
      throw new Error(`sealed PII: not an ${ALG} blob`);
    }
    if (sealed.kid !== this.kid) {
      throw new Error(`sealed PII: sealed with key "${sealed.kid}", this vault holds "${this.kid}"`);
    }
    if (typeof sealed.iv !== "string" || typeof sealed.ct !== "string") throw new Error("sealed PII: iv and ct must be strings");
    const iv = fromBase64(sealed.iv, "iv");
    if (iv.length !== IV_BYTES) throw new Error(`sealed PII: iv must be ${IV_BYTES} bytes`);
    const ct = fromBase64(sealed.ct, "ct");
    const enc = new TextEncoder();
    let plain;
    try {
      plain = await this.subtle.decrypt({ name: "AES-GCM", iv, additionalData: enc.encode(aad) }, this.key, ct);
    } catch (err) {
      // WebCrypto reports every authentication failure as a bare OperationError
      // and cannot say which input was wrong.
      throw new Error(`sealed PII failed authentication: tampered, wrong key or wrong aad (${err && err.name})`);
    }
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
  }
}

/**
 * @param {unknown} v
 * @returns {boolean}
 */
function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

const hasOwn = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

/**
 * Split an envelope into what may be stored in clear and what must be sealed.
 * Pure: no crypto, inputs are not modified (the secret shares nested values
 * with the input rather than copying them).
 *
 * - `pii === true`: every property is secret:
 *   `{clear: {...envelope, properties: {}}, secret: {properties}}`.
 * - `pii` a list of top-level property names: those present move out:
 *   `{clear: envelope minus them, secret: {fields: {name: value}}}` (an empty
 *   `fields` when none is present).
 * - `pii` false, null or undefined: `{clear: {...envelope}, secret: null}`.
 * @param {Envelope} envelope  with a `properties` object
 * @param {boolean|string[]|null|undefined} pii
 * @returns {{clear: Envelope, secret: {properties: object}|{fields: object}|null}}
 * @throws {TypeError} on any other `pii`, or when envelope.properties is not an object
 */
export function splitPii(envelope, pii) {
  const properties = envelope.properties;
  if (!isPlainObject(properties)) throw new TypeError("splitPii: envelope.properties must be an object");
  if (pii === false || pii === null || pii === undefined) return { clear: { ...envelope }, secret: null };
  if (pii === true) return { clear: { ...envelope, properties: {} }, secret: { properties } };
  if (!Array.isArray(pii) || !pii.every((name) => typeof name === "string")) {
    throw new TypeError("splitPii: pii must be true or a list of property names");
  }
  const names = new Set(pii);
  // Object.fromEntries and spread define own data properties, so a property
  // named "__proto__" stays a property instead of replacing a prototype.
  const fields = Object.fromEntries(Object.entries(properties).filter(([k]) => names.has(k)));
  const rest = Object.fromEntries(Object.entries(properties).filter(([k]) => !names.has(k)));
  return { clear: { ...envelope, properties: rest }, secret: { fields } };
}

/**
 * Undo {@link splitPii}: the result deep-equals the original envelope. Key
 * order may differ: fields moved out by a list come back after the clear
 * properties (JSON consumers and the core do not depend on key order).
 * @param {Envelope} clear
 * @param {{properties: object}|{fields: object}|null} secret
 * @returns {Envelope}
 * @throws {TypeError} when `secret` is not something splitPii returns
 */
export function joinPii(clear, secret) {
  if (secret === null || secret === undefined) return { ...clear };
  if (isPlainObject(secret) && hasOwn(secret, "properties") && isPlainObject(secret.properties)) {
    return { ...clear, properties: { ...clear.properties, ...secret.properties } };
  }
  if (isPlainObject(secret) && hasOwn(secret, "fields") && isPlainObject(secret.fields)) {
    return { ...clear, properties: { ...clear.properties, ...secret.fields } };
  }
  throw new TypeError("joinPii: secret must be {properties} or {fields}");
}
