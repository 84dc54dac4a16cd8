// The rules capture and the unload beacon apply while the core cannot answer
// (before Pyodide has loaded, during unload, if the core failed). They are the
// core's (`Config.rules()` in py_src/revu/_config.py): bootstrap_rules.json is
// the core's defaults (tests/contract keeps them equal), and the options a page
// passes to init() apply at once, read by the same checks as the core's
// (tests/contract/rules_cases.json pins the reading).
//
// What the core last published is stored (`<prefix>:rules`) but never trusted
// for a decision: values named like an option come from the page's own init()
// (an earlier page or a tampered value must not shrink this page's caps), and
// the fixed limits are this SDK's own. A stored value that is not what this
// SDK's core would publish is reported as corrupt (`corrupt_rules`) and
// ignored; one written by another SDK version (`rulesVersion`) is ignored quietly.

import BOOTSTRAP_RULES from "./bootstrap_rules.json" with { type: "json" };

export { BOOTSTRAP_RULES };

/** @typedef {import("./types.js").Rules} Rules */

const KEEPALIVE_BUDGET_BYTES = 60000;
/** Rules that take the value of the init() option of the same name. */
export const OPTION_RULES = ["maxQueue", "maxQueueBytes", "maxEventBytes", "maxBatchBytes"];

const positiveInt = (v) => Number.isSafeInteger(v) && v >= 1;

/**
 * Why a stored rules object is not one this SDK's core would publish, or null
 * (also null when nothing was stored, or it came from another rules version).
 * @param {unknown} stored
 * @returns {string|null}
 */
export function storedRulesProblem(stored) {
  if (stored === null || stored === undefined) return null;
  if (typeof stored !== "object" || Array.isArray(stored)) return "not an object";
  if (stored.rulesVersion !== BOOTSTRAP_RULES.rulesVersion) {
    return Number.isInteger(stored.rulesVersion) ? null : "no rulesVersion";
  }
  for (const [key, expected] of Object.entries(BOOTSTRAP_RULES)) {
    const value = stored[key];
    if (OPTION_RULES.includes(key)) {
      if (!positiveInt(value)) return `${key} is not a positive integer`;
    } else if (key === "coalesce") {
      if (!Array.isArray(value) || !value.every((n) => typeof n === "string")) return "coalesce is not a list of names";
    } else if (JSON.stringify(value) !== JSON.stringify(expected)) {
      return `${key} is ${JSON.stringify(value)?.slice(0, 40)}, not ${JSON.stringify(expected)}`;
    }
  }
  if (stored.maxBatchBytes > KEEPALIVE_BUDGET_BYTES || stored.maxEventBytes > stored.maxBatchBytes) {
    return "maxEventBytes/maxBatchBytes out of range";
  }
  return null;
}

/**
 * The rules for this page: the core's defaults with the page's own options.
 * An option the core would refuse is left at its default here (the core then
 * refuses init and says why).
 * @param {Record<string, unknown>} options  init() options (already a plain copy)
 * @returns {Rules}
 */
export function rulesFor(options) {
  const rules = { ...BOOTSTRAP_RULES };
  for (const key of OPTION_RULES) {
    if (positiveInt(options[key])) rules[key] = options[key];
  }
  if (rules.maxBatchBytes > KEEPALIVE_BUDGET_BYTES) rules.maxBatchBytes = BOOTSTRAP_RULES.maxBatchBytes;
  if (rules.maxEventBytes > rules.maxBatchBytes) {
    rules.maxEventBytes = Math.min(BOOTSTRAP_RULES.maxEventBytes, rules.maxBatchBytes);
  }
  const coalesce = options.coalesce;
  if (coalesce && typeof coalesce === "object" && !Array.isArray(coalesce)) {
    rules.coalesce = Object.keys(coalesce).filter((name) => name).sort();
  }
  return rules;
}
