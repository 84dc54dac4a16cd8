// TypeScript declarations for revu's public API: `import { revu } from "revu"`
// (dist/revu.mjs) and `window.revu` from the classic script (dist/revu.js).
// Checked against js_shim/index.js, js_shim/capture.js, js_shim/queue_store.js
// and the core's py_src/revu/_config.py and _outbox.py; tests/npm/example.ts
// type-checks against this file.

/** A JSON value as `record()` properties and mutation bodies carry it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

/** Consent: everything, nothing, or per category (e.g. `{analytics: true, ads: false}`). */
export type ConsentState = "granted" | "denied" | Record<string, boolean>;

export type Priority = "high" | "normal" | "low";

/** One `coalesce` rule: a newer event of the name replaces a queued one. */
export interface CoalesceRule {
  windowMs?: number;
  ttlMs?: number;
}

/**
 * `revu.init()` options. Unknown or out-of-range options are refused with an
 * `error` event (`invalid_options`) and `revu.ready` rejects.
 */
export interface RevuOptions {
  /** Required: non-empty string (at most 1000 characters), sent as `api_key`. */
  apiKey: string;
  /** http(s) origin; requests go to `${host}/v1/behavior/events`. Default `https://api.revu.ai`. */
  host?: string;
  /** Send when this many events are queued (1..maxQueue). Default 20. */
  flushAt?: number;
  /** Background drain timer. Default 5000. */
  flushIntervalMs?: number;
  /** Events per request (1..maxQueue). Default 50. */
  maxBatch?: number;
  /** Cap on queued items; the oldest are dropped first (`dropped.overflow`). Default 1000. */
  maxQueue?: number;
  /** Request body budget, at most 60000. Default 60000. */
  maxBatchBytes?: number;
  /** One envelope's JSON size; larger events are refused (`too_large`). Default 32768. */
  maxEventBytes?: number;
  /** Default 1000. */
  backoffBaseMs?: number;
  /** Default 60000. */
  backoffMaxMs?: number;
  /** A longer `Retry-After` is cut to this. Default 3600000. */
  maxRetryAfterMs?: number;
  /** A request with no answer by then is aborted and retried. Default 10000. */
  requestTimeoutMs?: number;
  /** Stored dead letters. Default 1000. */
  maxDeadLetters?: number;
  /** Cap on queued bytes (`dropped.overflow_bytes`). Default 2000000. */
  maxQueueBytes?: number;
  /** Queued items older than this are dropped (`dropped.max_age`). Default 30 days. */
  maxAgeMs?: number;
  /** Failures the server answered before an item is dead-lettered; 0 = no limit. Default 0. */
  maxAttempts?: number;
  /** Request body compression. Default "auto". */
  compression?: "auto" | "gzip" | "off";
  /** Smallest body that is compressed. Default 1024. */
  compressMinBytes?: number;
  /** Items per request while draining a backlog. Default 1000. */
  drainBatch?: number;
  /** Bytes per request while draining a backlog, at most 1000000. Default 524288. */
  drainBatchBytes?: number;
  /** Pace of large drains on a slow or metered connection. Default 30000. */
  slowDrainIntervalMs?: number;
  /** Initial consent; default the state stored by the last `revu.consent()`, else "granted". */
  consent?: ConsentState;
  /** Coalescing rules by event name, e.g. `{typing: {windowMs: 1000, ttlMs: 5000}}`. */
  coalesce?: Record<string, CoalesceRule>;
  /** Log to the console; "verbose" adds one line per recorded event. Default false. */
  debug?: boolean | "verbose";
  /** "memory" never persists. Default "localStorage". */
  storage?: "localStorage" | "memory";
  /** Key prefix in localStorage: 1 to 64 of A-Z a-z 0-9 _ -. Default "revu". */
  storageKey?: string;
  /**
   * The folder that holds `assets/` (the package's `dist/` folder as served).
   * Default for dist/revu.js: its own URL. Required with the ES module.
   */
  assetsUrl?: string;
  /** One core per origin (a leader tab) when true; every tab its own core when false. Default true. */
  tabs?: boolean;
  /**
   * Keep a memory snapshot of the started core in Cache Storage, so that a
   * returning visitor starts from it (about twice as fast). Default true.
   */
  snapshotCache?: boolean;
}

/** `revu.record()` options. */
export interface RecordOptions {
  /** Within a stream, record order is delivery order (1 to 200 bytes). */
  stream?: string;
  /** Default "normal". */
  priority?: Priority;
  /** Semantic dedupe keys (at most 16), e.g. `{messageId: "m1"}`. */
  keys?: Record<string, string>;
  /** Consent category. Default "analytics". */
  category?: string;
  /** Drop the event if still queued this long after it was recorded. */
  ttlMs?: number;
  /** true (all properties) or the property names never stored in clear. */
  pii?: true | string[];
}

/** The wire envelope of an item (without `sent_at`). */
export interface Envelope {
  event_id: string;
  event: string;
  properties: Record<string, JsonValue>;
  created_at: number;
  stream?: string;
  priority?: Priority;
  keys?: Record<string, string>;
}

export interface MutationSpec {
  /** http(s), at most 8192 bytes; relative URLs resolve against the page. */
  url: string;
  /** Default "POST". */
  method?: "POST" | "PUT" | "PATCH" | "DELETE";
  /** Sent as JSON unless it is a string. */
  body?: JsonValue;
  /** At most 32, string values. */
  headers?: Record<string, string>;
  /** Sent as `Idempotency-Key`; a UUID unless given. */
  idempotencyKey?: string;
  stream?: string;
}

/** A mutation as stored and sent. */
export interface Mutation {
  method: string;
  url: string;
  body: JsonValue;
  headers: Record<string, string>;
  idempotency_key: string;
}

export interface EnqueuedMutation {
  id: string;
  idempotencyKey: string;
  stream: string | null;
  status: "pending";
}

export interface FailureInfo {
  reason: string;
  status: number | null;
  attempts: number;
}

/** A queued, held or dead-lettered item from `revu.outbox.entries()`. */
export interface ItemEntry {
  id: string;
  kind: "event" | "mutation";
  /** "held": kept in memory until consent is known. */
  status: "pending" | "held" | "failed";
  envelope: Envelope;
  createdAt: number;
  stream: string | null;
  mutation?: Mutation;
  idempotencyKey?: string;
  /** Dead letters only. */
  error?: FailureInfo;
}

/** A stored value set aside at start-up (never sent); `revu.outbox.drop(id)` removes it. */
export interface QuarantinedEntry {
  id: string;
  kind: "quarantined";
  status: "quarantined";
  reason: "too_large" | "too_deep" | "not_json" | "unknown_version" | "unsafe_seq" | "key_mismatch" | "invalid_record" | "unsealable" | (string & {});
  area: string;
  createdAt: number | null;
  bytes: number | null;
  /** The value's first 8192 characters. */
  sample: string;
  truncated: boolean;
}

export type OutboxEntry = ItemEntry | QuarantinedEntry;

export type LaneState = "idle" | "draining" | "sending" | "backing_off" | (string & {});

/** `revu.status()`. Before the core is ready (and after it stopped) only the fields of `BasicStatus` are set. */
export interface BasicStatus {
  ready: boolean;
  queued: number;
  online: boolean;
  storage: "localStorage" | "memory" | null;
  durable: boolean;
  memoryOnly: boolean;
  consent?: ConsentState | "unknown";
  pii?: "encrypted" | "memory" | "pending";
  /** "leader" runs the core; "follower": another tab does. null before init. */
  role: "leader" | "follower" | null;
  /** Counts by reason, once the core has reported them. */
  dropped?: Record<string, number>;
  quarantined?: Record<string, number>;
  /** Set only if reading the status itself failed. */
  error?: string;
}

export interface CoreStatus extends BasicStatus {
  state: LaneState;
  queuedBytes: number;
  inFlight: number;
  failures: number;
  backoffMs: number;
  retryAtMs: number | null;
  streams: Record<string, { state: LaneState; failures: number; retryAtMs: number | null }>;
  acked: number;
  requests: number;
  retried: number;
  beaconed: number;
  dropped: Record<string, number>;
  deadLettered: number;
  quarantined: Record<string, number>;
  repaired: number;
  coreErrors: number;
  lastError: string | null;
  compression: "off" | "gzip" | "pending";
  network: { saveData: boolean; effectiveType: string | null; slow: boolean };
  hidden: boolean;
}

export type RevuStatus = BasicStatus | CoreStatus;

/** Codes of the `error` event (README "What revu does with bad input"). */
export type ErrorCode =
  | "not_initialised"
  | "already_initialised"
  | "invalid_options"
  | "invalid_event"
  | "invalid_properties"
  | "invalid_mutation"
  | "invalid_consent"
  | "invalid_listener"
  | "invalid_record"
  | "too_deep"
  | "too_many_members"
  | "too_large"
  | "unserialisable"
  | "storage_unavailable"
  | "storage_failed"
  | "corrupt_consent"
  | "corrupt_rules"
  | "quarantined"
  | "unknown_entry"
  | "core_unavailable"
  | "core_error"
  | "bad_fact"
  | "command_failed"
  | "init_failed"
  | "record_failed"
  | "flush_failed"
  | "consent_failed"
  | "outbox_enqueue_failed"
  | "outbox_entries_failed"
  | "outbox_retry_failed"
  | "outbox_drop_failed";

/** The payload of `failed` items (`outbox:failed`, `onRollback`). */
export interface FailedDetail {
  kind: "event" | "mutation";
  envelope: Envelope;
  mutation: Mutation | null;
  error: FailureInfo;
}

/** Every event `revu.on()` delivers, with its payload. */
export interface RevuEvents {
  "outbox:update": { size: number; head: Envelope | null };
  "outbox:sent": { batchId: string; kind: "event" | "mutation"; eventIds: string[]; bytes: number; encoding: "gzip" | null };
  "outbox:acked": { eventIds: string[] };
  "outbox:retry": {
    kind: "event" | "mutation";
    batchId: string;
    eventIds: string[];
    reason: string;
    status: number | null;
    attempt: number;
    delayMs: number;
    retryAtMs: number;
  };
  "outbox:dropped": { eventIds: string[]; reason: string };
  "outbox:flushed": { acked: number };
  "outbox:failed": FailedDetail;
  error: { code: ErrorCode; message: string };
  /** The core is live (in this tab, or in the leader tab for a follower). */
  ready: { role: "leader" | "follower" | null };
}

export type RevuEventName = keyof RevuEvents;

/** Returned by `on()` and `onRollback()`: removes the listener. */
export type Unsubscribe = () => void;

export interface RevuOutbox {
  /** A durable, retried write; null on bad input. */
  enqueue(spec: MutationSpec): EnqueuedMutation | null;
  /** Queued, held, dead-lettered and quarantined items, in clear. */
  entries(): OutboxEntry[];
  /** Requeue a dead letter: true once acknowledged, false if it fails for good again. */
  retry(id: string): Promise<boolean>;
  /** Forget a dead letter (`dropped.by_page`) or a quarantined value. */
  drop(id: string): boolean;
  /** `fn(failure)` for every item that fails for good. */
  onRollback(fn: (failure: FailedDetail) => void): Unsubscribe;
}

export interface Revu {
  /** Configure once; later calls are ignored with an `error` event (`already_initialised`). */
  init(options: RevuOptions): void;
  /** Stores the event before returning; its event_id, or null on bad input or when consent forbids it. */
  record(event: string, properties?: Record<string, unknown> | null, options?: RecordOptions): string | null;
  /** true once every item queued at the call is acknowledged; false as soon as one fails or is dropped. */
  flush(): Promise<boolean>;
  /** Sets the consent state and purges what it forbids; false on bad input. */
  consent(state: ConsentState): boolean;
  status(): RevuStatus;
  on<K extends RevuEventName>(name: K, fn: (detail: RevuEvents[K]) => void): Unsubscribe;
  outbox: RevuOutbox;
  /** Resolves true when the core is live; rejects if it cannot load (capture goes on). */
  ready: Promise<true>;
  version: string;
}

/** The page's revu instance. */
export declare const revu: Revu;
export default revu;

declare global {
  interface Window {
    /** Set by the classic script (dist/revu.js), not by the ES module. */
    revu?: Revu;
  }
}
