// Runs before revu.js: records every CSP violation of the page.
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
