// The classic-script entry (dist/revu.js, an IIFE): installs window.revu,
// taking over the snippet's stub if the page has one. Assets load relative to
// this script's URL unless init() is given assetsUrl.

import { adoptStub, createRevu } from "./index.js";

if (typeof window !== "undefined" && !window.revu?.version) {
  const script = typeof document !== "undefined" ? document.currentScript : null;
  const real = createRevu({ scriptUrl: script && script.src ? script.src : undefined });
  window.revu = window.revu && Array.isArray(window.revu._q) ? adoptStub(window.revu, real) : real;
}
