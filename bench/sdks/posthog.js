// posthog-js from npm (its default entry), everything but event capture off,
// nothing fetched from PostHog's servers. variant "posthog-default" keeps the
// client rate limit and the bot (user agent) filter at their defaults;
// "posthog" (fair) lifts both, as PostHog's docs advise for tests.
import posthog from "posthog-js";
import { config, deferred, publish } from "./_common.js";

const cfg = config();
const loaded = deferred();
const fair = cfg.variant !== "posthog-default";
window.__bench.initAt = performance.now();
posthog.init("phc_bench", {
  api_host: cfg.sink + "/posthog",
  autocapture: false,
  capture_pageview: false,
  capture_pageleave: false,
  disable_session_recording: true,
  advanced_disable_flags: true,
  advanced_disable_feature_flags: true,
  advanced_disable_toolbar_metrics: true,
  disable_surveys: true,
  disable_product_tours: true,
  disable_conversations: true,
  disable_web_experiments: true,
  disable_external_dependency_loading: true,
  capture_performance: false,
  capture_heatmaps: false,
  capture_dead_clicks: false,
  capture_exceptions: false,
  ...(fair ? { opt_out_useragent_filter: true, rate_limiting: { events_per_second: 1e6, events_burst_limit: 1e7 } } : {}),
  ...(cfg.options || {}),
  loaded: () => loaded.resolve(),
});
publish(cfg.variant || "posthog", (event, props) => posthog.capture(event, props), loaded.promise);
