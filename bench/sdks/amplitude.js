// @amplitude/analytics-browser from npm: autocapture (sessions, page views,
// attribution, form and file tracking) off, no remote config, no diagnostics;
// posts to the sink. Batching, retries and storage: its defaults.
import * as amplitude from "@amplitude/analytics-browser";
import { config, publish } from "./_common.js";

const cfg = config();
window.__bench.initAt = performance.now();
const init = amplitude.init("bench-api-key", undefined, {
  serverUrl: cfg.sink + "/amplitude/2/httpapi",
  autocapture: false,
  fetchRemoteConfig: false,
  remoteConfig: { fetchRemoteConfig: false },
  enableDiagnostics: false,
  logLevel: 0,
  ...(cfg.options || {}),
});
publish("amplitude", (event, props) => { amplitude.track(event, props); }, init.promise);
