// The consent gate capture applies synchronously (it owns persisting, and
// "without consent nothing is persisted"). The rule is the core's
// `consent_allows` / `check_consent` in py_src/revu/_config.py;
// tests/contract/consent_cases.json holds the cases both must agree on.

import { utf8Length } from "./json_encode.js";

/** The state while consent is not known (a corrupt stored value, an invalid init option). */
export const UNKNOWN_CONSENT = "unknown";
const MAX_CATEGORIES = 64;
const MAX_NAME_BYTES = 200;

/**
 * @param {unknown} state
 * @returns {string|null} why `state` is not a consent state, or null when it is
 */
export function consentProblem(state) {
  if (state === "granted" || state === "denied") return null;
  try {
    if (state && typeof state === "object" && !Array.isArray(state)) {
      const entries = Object.entries(state);
      if (entries.length > 0 && entries.length <= MAX_CATEGORIES &&
          entries.every(([k, v]) => k && utf8Length(k) <= MAX_NAME_BYTES && typeof v === "boolean")) return null;
    }
  } catch (_) {
    // a Proxy or a getter that throws: not a consent state
  }
  return 'consent must be "granted", "denied" or an object of 1 to 64 category: true/false';
}

/**
 * A plain copy of a consent state that passed consentProblem (so that a page
 * changing its object later changes nothing here).
 * @param {"granted"|"denied"|Record<string, boolean>} state
 * @returns {"granted"|"denied"|Record<string, boolean>}
 */
export function consentCopy(state) {
  return typeof state === "string" ? state : Object.fromEntries(Object.entries(state));
}

/**
 * Whether `state` lets an item of `category` be stored and sent. "necessary"
 * (mutation-outbox writes the user asked for) is always allowed; a category
 * missing from a per-category state is denied; an unknown state allows only
 * "necessary".
 * @param {unknown} state
 * @param {string} category
 * @returns {boolean}
 */
export function consentAllows(state, category) {
  if (category === "necessary" || state === "granted") return true;
  if (state && typeof state === "object") return Object.prototype.hasOwnProperty.call(state, category) && state[category] === true;
  return false;
}
