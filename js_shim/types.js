// JSDoc typedefs shared by the shim. No code.

/**
 * Rules the core publishes for the moments it cannot answer (before Pyodide
 * has loaded, during unload). `bootstrap_rules.json` holds the defaults.
 * @typedef {object} Rules  (see py_src/revu/_config.py `Config.rules`)
 * @property {number} rulesVersion
 * @property {number} schemaVersion
 * @property {string} defaultHost
 * @property {string} eventsPath
 * @property {number} maxQueue
 * @property {number} maxQueueBytes
 * @property {number} maxEventBytes
 * @property {number} maxBatchBytes    the beacon's budget (UTF-8 bytes of the body)
 * @property {number} maxDepth
 * @property {number} maxMembers
 * @property {number} maxNameBytes
 * @property {number} maxOptionBytes
 * @property {number} maxKeys
 * @property {number} maxPiiNames
 * @property {number} maxUrlBytes
 * @property {number} maxHeaders
 * @property {number} maxRecordBytes
 * @property {string[]} priorities
 * @property {string} defaultCategory
 * @property {string} necessaryCategory
 * @property {Record<string, number>} evictionRank
 * @property {string[]} coalesce       event names with a coalescing rule
 */

/**
 * Synchronous key-value storage for records (localStorage or memory).
 * Every method may throw; callers catch and fall back.
 * @typedef {object} Store
 * @property {string} kind                                 "localStorage" | "memory"
 * @property {boolean} durable                             survives a reload
 * @property {() => {queued: StoredItem[], dead: StoredItem[], quarantined: StoredItem[], rules: unknown, consent: unknown}} loadAll
 * @property {(id: string, raw: string) => void} putRecord
 * @property {(ids: string[]) => void} deleteRecords
 * @property {(id: string, raw: string) => void} putDeadLetter
 * @property {(ids: string[]) => void} deleteDeadLetters
 * @property {(key: string, raw: string) => void} putQuarantine
 * @property {(keys: string[]) => void} deleteQuarantine
 * @property {(fn: (change: {area: string, id: string, raw: string|null}) => void) => void} watch  other tabs' changes
 * @property {() => Record<string, number>} getInFlight
 * @property {(value: Record<string, number>) => void} putInFlight
 * @property {(rules: Rules) => void} putRules
 * @property {(consent: unknown) => void} putConsent
 */

/**
 * @typedef {object} StoredItem
 * @property {string} id   storage id (the event_id for well-formed records)
 * @property {string} raw  the stored string, handed to the core undecoded
 */

/**
 * A fact for the core: `{type: "snake_case", now_ms, ...fields}`.
 * @typedef {{type: string, now_ms: number} & Record<string, unknown>} Fact
 */

/**
 * A command from the core: `{type: "snake_case", ...fields}`.
 * @typedef {{type: string} & Record<string, unknown>} Command
 */

/**
 * The core behind the bridge: JSON strings in and out.
 * @typedef {object} Core
 * @property {(optionsJson: string) => Promise<string>} start
 * @property {(factsJson: string) => Promise<string>} handle
 */

export {};
