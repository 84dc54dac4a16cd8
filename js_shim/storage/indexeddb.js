// The only file that touches indexedDB.
//
// Today it holds one thing: the PII vault's AES-GCM key. A CryptoKey is
// structured-cloneable (https://w3c.github.io/webcrypto/#cryptokey-interface-clone),
// so IndexedDB stores the key object itself, non-extractable flag included;
// the raw key bytes never reach JavaScript, let alone storage. localStorage
// only takes strings, which is why the key cannot live there.

import { nowMs, Timers } from "../clock.js";

const VERSION = 1;
const KEYS = "keys";

/**
 * Why a browser refuses IndexedDB, in words a page author can act on.
 * @param {unknown} err
 * @returns {string}
 */
function reason(err) {
  if (err && typeof err === "object" && "name" in err) return `${err.name}: ${err.message ?? ""}`.trim();
  return String(err);
}

/**
 * Run `body` in its own transaction and settle when the transaction does: a
 * write is only durable once `complete` fires, not at the request's `success`
 * (https://w3c.github.io/IndexedDB/#transaction-lifecycle).
 * @template T
 * @param {IDBDatabase} db
 * @param {IDBTransactionMode} mode
 * @param {(store: IDBObjectStore, done: (value: T) => void, abort: (err: unknown) => void) => void} body
 * @returns {Promise<T>}
 */
function inTransaction(db, mode, body) {
  return new Promise((resolve, reject) => {
    /** @type {T} */
    let result;
    /** @type {unknown} */
    let failure = null;
    /** @type {IDBTransaction} */
    let tx;
    try {
      // "strict" asks the browser to flush to disk before `complete`: losing
      // the key would make every sealed blob unreadable. Browsers that do not
      // know the option ignore the dictionary member.
      tx = db.transaction(KEYS, mode, { durability: "strict" });
    } catch (err) {
      reject(new Error(`IndexedDB transaction refused (${reason(err)})`));
      return;
    }
    tx.oncomplete = () => resolve(result);
    // A failed request's error event bubbles to the transaction, which then
    // aborts, so onabort is the one place that reports failures.
    tx.onabort = () => reject(new Error(`IndexedDB transaction aborted (${reason(failure ?? tx.error ?? "aborted")})`));
    const abort = (err) => {
      failure = err;
      try {
        tx.abort();
      } catch (_) {
        // already finished: onabort or oncomplete has the last word
      }
    };
    try {
      body(tx.objectStore(KEYS), (value) => { result = value; }, abort);
    } catch (err) {
      abort(err);
    }
  });
}

/**
 * A small store of CryptoKeys in IndexedDB: database `name`, version 1, one
 * object store `keys` (out-of-line keys: the id is the IDB key).
 */
export class IndexedDbKeyStore {
  /**
   * Use {@link IndexedDbKeyStore.open}.
   * @param {IDBDatabase} db
   */
  constructor(db) {
    this.kind = "indexedDB";
    /** @type {IDBDatabase} */
    this.db = db;
    // Another tab upgrading the database (a later SDK version) waits until
    // every open connection closes; close ours rather than block it. Later
    // calls then reject and the SDK falls back to memory for this page.
    db.onversionchange = () => db.close();
  }

  /**
   * Open (and create on first use) the key database.
   *
   * Gives up after `timeoutMs`: some browsers in private mode never settle the
   * open request instead of failing it (older Safari; Firefox before 115
   * failed it with InvalidStateError).
   * @param {string} name                   database name, e.g. `${storageKey}-vault`
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<IndexedDbKeyStore>}
   * @throws {Error} when IndexedDB is missing, refused (private mode, sandboxed
   *   frame, blocked storage), blocked by another connection, or too slow
   */
  static open(name, { timeoutMs = 3000 } = {}) {
    return new Promise((resolve, reject) => {
      let idb;
      try {
        // Reading the property itself throws SecurityError in some contexts
        // (opaque origins, storage blocked by the user).
        idb = globalThis.indexedDB;
      } catch (err) {
        reject(new Error(`IndexedDB is not available (${reason(err)})`));
        return;
      }
      if (!idb) {
        reject(new Error("IndexedDB is not available in this environment"));
        return;
      }

      let settled = false;
      const timers = new Timers();
      const fail = (message) => {
        if (settled) return;
        settled = true;
        timers.cancel("open");
        reject(new Error(message));
      };

      /** @type {IDBOpenDBRequest} */
      let req;
      try {
        req = idb.open(name, VERSION);
      } catch (err) {
        fail(`IndexedDB refused to open "${name}" (${reason(err)})`);
        return;
      }
      timers.set("open", nowMs() + timeoutMs, () =>
        fail(`IndexedDB did not open "${name}" within ${timeoutMs} ms (private browsing mode?)`),
      );
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(KEYS)) db.createObjectStore(KEYS);
      };
      req.onsuccess = () => {
        const db = req.result;
        if (settled) {
          db.close(); // arrived after the timeout: nobody is holding it
          return;
        }
        settled = true;
        timers.cancel("open");
        resolve(new IndexedDbKeyStore(db));
      };
      req.onerror = () => fail(`IndexedDB refused to open "${name}" (${reason(req.error)})`);
      // No onblocked handler: `blocked` only means another tab holds an older
      // version open. It is not final (the open goes on once they close), and
      // the timeout bounds the wait.
    });
  }

  /**
   * @param {string} id
   * @returns {Promise<CryptoKey|null>} the stored key, or null when there is none
   */
  getKey(id) {
    return inTransaction(this.db, "readonly", (store, done) => {
      const req = store.get(id);
      req.onsuccess = () => done(req.result ?? null);
    });
  }

  /**
   * Store `key` under `id` unless a key is already there, and return the key
   * stored afterwards. Add-if-absent rather than overwrite: two tabs opening
   * the vault for the first time both generate a key, and if the second
   * overwrote the first, what the first tab sealed would become unreadable.
   * One readwrite transaction makes the check and the add atomic across tabs
   * (transactions with overlapping scope run one at a time).
   * @param {string} id
   * @param {CryptoKey} key
   * @returns {Promise<CryptoKey>} `key`, or the key another tab stored first
   */
  putKey(id, key) {
    return inTransaction(this.db, "readwrite", (store, done, abort) => {
      const req = store.get(id);
      req.onsuccess = () => {
        if (req.result) {
          done(req.result);
          return;
        }
        try {
          store.add(key, id); // DataCloneError if `key` is not cloneable
          done(key);
        } catch (err) {
          abort(err);
        }
      };
    });
  }

  /**
   * Remove the key under `id` (everything sealed with it becomes unreadable).
   * @param {string} id
   * @returns {Promise<void>}
   */
  deleteKey(id) {
    return inTransaction(this.db, "readwrite", (store, done) => {
      store.delete(id);
      done(undefined);
    });
  }

  /**
   * Close the connection; later calls reject.
   * @returns {void}
   */
  close() {
    this.db.close();
  }
}
