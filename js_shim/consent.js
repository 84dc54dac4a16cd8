// The consent gate capture applies synchronously (it owns persisting, and
// "without consent nothing is persisted"). The rule is the core's
// `consent_allows` in py_src/revu/_config.py; tests/contract/consent_cases.json
// holds the cases both must agree on.

/**
 * @param {unknown} state
 * @returns {string|null} why `state` is not a consent state, or null when it is
 */
export function consentProblem(state) {
  if (state === "granted" || state === "denied") return null;
  if (state && typeof state === "object" && !Array.isArray(state)) {
    const entries = Object.entries(state);
    if (entries.length && entries.every(([k, v]) => k && typeof v === "boolean")) return null;
  }
  return 'consent must be "granted", "denied" or an object of category: true/false';
}

/**
 * Whether `state` lets an item of `category` be stored and sent. "necessary"
 * (mutation-outbox writes the user asked for) is always allowed; a category
 * missing from a per-category state is denied.
 * @param {"granted"|"denied"|Record<string, boolean>} state
 * @param {string} category
 * @returns {boolean}
 */
export function consentAllows(state, category) {
  if (category === "necessary" || state === "granted") return true;
  if (state && typeof state === "object") return state[category] === true;
  return false;
}
