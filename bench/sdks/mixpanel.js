// mixpanel-browser from npm (its default entry): page views, autocapture,
// session recording and flags off (most are off by default); posts to the
// sink. Batching, payload format (base64) and storage: its defaults.
import mixpanel from "mixpanel-browser";
import { config, deferred, publish } from "./_common.js";

const cfg = config();
const loaded = deferred();
window.__bench.initAt = performance.now();
mixpanel.init("bench-token", {
  api_host: cfg.sink + "/mixpanel",
  track_pageview: false,
  autocapture: false,
  record_sessions_percent: 0,
  flags: false,
  ignore_dnt: true,
  ...(cfg.options || {}),
  loaded: () => loaded.resolve(),
});
publish("mixpanel", (event, props) => { mixpanel.track(event, props); }, loaded.promise);
