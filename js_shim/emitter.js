/** Listeners for `revu.on(name, fn)`. A throwing listener never breaks revu. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }

  /**
   * @param {string} name
   * @param {(detail: unknown) => void} fn
   * @returns {() => void} unsubscribe
   */
  on(name, fn) {
    if (typeof fn !== "function") throw new TypeError("revu.on needs a function");
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => {
      this.listeners.get(name)?.delete(fn);
    };
  }

  /**
   * @param {string} name
   * @param {unknown} detail
   * @returns {void}
   */
  emit(name, detail) {
    for (const fn of this.listeners.get(name) ?? []) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`[revu] a "${name}" listener threw`, err);
      }
    }
  }
}
