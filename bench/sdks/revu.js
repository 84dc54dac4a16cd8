// revu through its public API only: the page loaded /revu/revu.js before this.
import { config, publish } from "./_common.js";

const cfg = config();
window.__bench.initAt = performance.now();
// cfg.options: workload overrides (maxQueue where a workload exceeds the default cap).
revu.init({ apiKey: "bench-key", host: cfg.sink, debug: false, ...(cfg.options || {}) });
publish("revu", (event, props) => revu.record(event, props), revu.ready, () => {
  const s = revu.status();
  return { queued: s.queued, ready: s.ready, dropped: s.dropped, memoryOnly: s.memoryOnly, storage: s.storage };
});
