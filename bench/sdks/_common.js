// Shared by every bench adapter: the page's first inline script set
// window.__bench (timings, long tasks) and window.__benchConfig (from ?cfg=).

/**
 * Publish an SDK to the harness as window.benchSdk.
 * @param {string} name
 * @param {(event: string, props: object) => unknown} track  the SDK's own call
 * @param {Promise<unknown>} ready  resolves when the SDK says it is initialised
 * @param {() => object} [status]  SDK-specific state worth reporting
 */
export function publish(name, track, ready, status) {
  const bench = window.__bench;
  bench.usableAt = performance.now();
  window.benchSdk = { name, track, ready, status: status || (() => ({})) };
  Promise.resolve(ready).then(
    () => { bench.readyAt = performance.now(); },
    (err) => { bench.failed = String(err && err.stack || err); },
  );
}

/** @returns {object} the harness's configuration for this page */
export function config() {
  const cfg = window.__benchConfig;
  if (!cfg || !cfg.sink) throw new Error("bench page without ?cfg={sink: ...}");
  return cfg;
}

/** A promise and its resolve function. */
export function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}
