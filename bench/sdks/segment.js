// @segment/analytics-next from npm: settings given inline (no CDN settings
// fetch), no destinations, no initial page view, its own metrics off; the
// Segment.io destination posts to the sink. Delivery strategy: its default.
import { AnalyticsBrowser } from "@segment/analytics-next";
import { config, publish } from "./_common.js";

const cfg = config();
const apiHost = cfg.sink.replace(/^https?:\/\//, "") + "/segment/v1";
const protocol = cfg.sink.startsWith("https:") ? "https" : "http";
window.__bench.initAt = performance.now();
const analytics = AnalyticsBrowser.load(
  {
    writeKey: "bench-write-key",
    cdnSettings: {
      integrations: { "Segment.io": { apiKey: "bench-write-key", apiHost, protocol } },
      metrics: { sampleRate: 0 },
    },
  },
  { integrations: { "Segment.io": { apiHost, protocol } }, initialPageview: false, ...(cfg.options || {}) },
);
publish("segment", (event, props) => { analytics.track(event, props); }, analytics.then(() => true));
