// The only file that uses navigator.locks and BroadcastChannel: who leads the
// origin's tabs, and the messages between them.
//
// One tab per origin (per storageKey) leads: it holds the Web Lock
// `revu-leader:<key>` and runs the core; the others follow. A lock is released
// by the browser when its tab closes, navigates away or crashes, and the next
// tab waiting for it becomes leader at once
// (https://w3c.github.io/web-locks/#lock-lifetime). Each tab also holds
// `revu-tab:<key>:<tabId>` for its whole life, so that the leader can tell
// which tabs are alive (navigator.locks.query()).

/** @returns {boolean} whether this browser can elect a leader (Web Locks + BroadcastChannel) */
export function tabsAvailable() {
  return !!(globalThis.navigator && globalThis.navigator.locks && typeof globalThis.navigator.locks.request === "function" &&
    typeof globalThis.BroadcastChannel === "function");
}

export class Tabs {
  /**
   * @param {{key: string, tabId: string, onMessage: (message: object) => void}} options
   */
  constructor({ key, tabId, onMessage }) {
    this.key = key;
    this.tabId = tabId;
    this.leaderLock = `revu-leader:${key}`;
    this.tabLockPrefix = `revu-tab:${key}:`;
    this.channel = new BroadcastChannel(`revu:${key}`);
    this.channel.onmessage = (event) => {
      const message = event.data;
      if (message && typeof message === "object" && message.from !== tabId) onMessage(message);
    };
  }

  /**
   * Hold this tab's presence lock, and wait for the leader lock: `onLeader`
   * runs when this tab gets it (at once if no other tab has it).
   * @param {() => void} onLeader
   * @returns {void}
   */
  elect(onLeader) {
    const forever = () => new Promise(() => {});
    const locks = globalThis.navigator.locks;
    locks.request(this.tabLockPrefix + this.tabId, forever).catch(() => {});
    locks.request(this.leaderLock, () => {
      onLeader();
      return forever();
    }).catch(() => {});
  }

  /**
   * The other tabs alive now (their presence locks are held).
   * @returns {Promise<string[]>}
   */
  async others() {
    const state = await globalThis.navigator.locks.query();
    return (state.held || [])
      .map((lock) => lock.name)
      .filter((name) => name && name.startsWith(this.tabLockPrefix))
      .map((name) => name.slice(this.tabLockPrefix.length))
      .filter((id) => id !== this.tabId);
  }

  /** @param {object} message @returns {void} */
  post(message) {
    try {
      this.channel.postMessage({ ...message, from: this.tabId });
    } catch (_) {
      // a message that cannot be cloned is a bug; the channel itself never throws otherwise
    }
  }
}
