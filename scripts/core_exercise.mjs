// A deterministic workout for the revu core through its JSON bridge, used at build time:
//
//   1. scripts/core_build.mjs `trace` runs it on Pyodide with the full stdlib and records
//      every module it imports (lazily imported ones included), so the trimmed stdlib
//      holds exactly what the core needs;
//   2. `verify` runs it again on the trimmed zip, through js_shim/core/load_core.js, and
//      compares the transcript with the one from step 1: a module missing from the zip,
//      or any other difference, fails the build instead of a user's page.
//
// It sends every fact type (the caller passes the core's list and the run fails if one
// was not sent), answers the core's sends like a flaky network (503 + Retry-After in
// seconds and as an HTTP date, 400s that isolate a poison event, 2xx with per-event
// rejections, acks), fires its timers, and walks the error paths: bad JSON, bad options,
// unknown facts, wrong field types, and a Python exception raised into JavaScript
// (which makes Pyodide format a traceback, importing what that needs).

const T0 = 1_732_200_000_000;

/**
 * @param {{start(s: string): Promise<string>|string, handle(s: any): Promise<string>|string}} bridge
 * @param {string[]} factTypes  every fact type the core knows (snake_case)
 * @returns {Promise<string[]>}  the transcript: one line per call, input and output
 */
export async function exerciseCore(bridge, factTypes) {
  const transcript = [];
  if (process.env.REVU_EXERCISE_DEBUG) transcript.push = (line) => { console.log(line.slice(0, 600)); return Array.prototype.push.call(transcript, line); };
  const sent = new Set();
  let now = T0;
  let nextId = 0;
  const timers = new Map();
  const pendingSends = [];

  async function call(method, arg) {
    let out;
    try {
      out = await bridge[method](arg);
    } catch (err) {
      // Only the class name: the traceback text carries file names and line numbers.
      out = `threw ${err && err.type ? err.type : err && err.name}`;
    }
    transcript.push(`${method}(${typeof arg === "string" ? arg : JSON.stringify(arg)}) -> ${out}`);
    return out;
  }

  async function handle(facts) {
    for (const fact of facts) sent.add(fact.type);
    const out = await call("handle", JSON.stringify(facts));
    const commands = JSON.parse(out);
    for (const c of commands) {
      if (c.type === "set_timer") timers.set(c.key, c.at_ms);
      if (c.type === "cancel_timer") timers.delete(c.key);
      if (c.type === "send") pendingSends.push(c);
    }
    return commands;
  }

  const envelope = (name, props = {}, extra = {}) => {
    nextId += 1;
    const id = `00000000-0000-4000-8000-${String(nextId).padStart(12, "0")}`;
    return { event_id: id, event: name, properties: props, created_at: now, ...extra };
  };
  const record = (env, more = {}) => ({ v: 1, seq: now * 1000 + nextId, env, ...more });

  // Error paths before start.
  await call("start", "not json");
  await call("start", JSON.stringify({ apiKey: "" }));
  await call("start", JSON.stringify({ apiKey: "k", flushAt: "many" }));
  await call("handle", JSON.stringify([{ type: "went_online", now_ms: now }]));

  await call("start", JSON.stringify({
    apiKey: "k",
    host: "https://ingest.example.com",
    flushAt: 3,
    maxBatch: 4,
    maxQueue: 50,
    maxAttempts: 4,
    backoffBaseMs: 1000,
    coalesce: { typing: { windowMs: 1000, ttlMs: 5000 } },
    consent: { analytics: true, marketing: true },
    debug: true,
  }));

  // Garbage in, refusals out.
  await call("handle", "not json");
  await call("handle", "{}");
  await call("handle", JSON.stringify([{ type: "no_such_fact", now_ms: now }, { type: "timer_fired" }]));
  await call("handle", JSON.stringify([{ type: "send_failed", now_ms: now, status: "503" }]));
  await call("handle", 123); // json.loads(int) raises TypeError into JavaScript

  const stored = record(envelope("page_view", { path: "/" }));
  const dead = { ...record(envelope("signup", { plan: "pro" })), reason: "http_422", status: 422, attempts: 1, at_ms: now };
  await handle([{
    type: "restored",
    now_ms: now,
    records: [
      { id: stored.env.event_id, raw: JSON.stringify(stored) },
      { id: "broken", raw: "{not json" },
      { id: "old", raw: JSON.stringify({ v: 99, seq: 1, env: {} }) },
    ],
    dead_letters: [{ id: dead.env.event_id, raw: JSON.stringify(dead) }],
    durable: true,
    online: true,
    dropped_before_start: { overflow: 1 },
    storage: "localStorage",
    consent: { analytics: true, marketing: true },
  }]);

  const queue = [];
  const recordEvent = async (env, meta) => {
    const rec = record(env, meta ? { meta } : {});
    queue.push(rec);
    return handle([{ type: "recorded", now_ms: now, record: JSON.stringify(rec), durable: true }]);
  };
  await recordEvent(envelope("click", { x: 1 }, { stream: "chat-1", priority: "high", keys: { messageId: "m1" } }));
  await recordEvent(envelope("click", { x: 2 }, { stream: "chat-1", keys: { messageId: "m1" } })); // duplicate key
  await recordEvent(envelope("typing", {}, { stream: "chat-1" }), { ttl_ms: 5000 });
  await recordEvent(envelope("typing", {}, { stream: "chat-1" }));
  await recordEvent(envelope("ad_view", { slot: 3 }), { category: "marketing" });
  await recordEvent(envelope("low", { i: 1 }, { priority: "low" }));
  await recordEvent(envelope("poison", { bad: true }));
  await recordEvent(envelope("email", { email: "a@example.com" }), { pii: ["email"] });
  await handle([{
    type: "recorded",
    now_ms: now,
    record: record(envelope("mutation", {}), {
      meta: { category: "necessary" },
      mutation: { method: "POST", url: "https://api.example.com/todo", body: { t: "x" }, headers: { "X-A": "1" }, idempotency_key: "k-1" },
    }),
    durable: true,
  }]);

  // A flaky network: each send gets the next answer, then 200s.
  const answers = [
    { status: 503, retry_after: "2" },
    { status: 429, retry_after: "Wed, 21 Oct 2015 07:28:00 GMT" },
    { status: null, error: "network error" },
    { status: 400 },
    { status: 400 },
    { status: 200, reply: { ok: true, rejected: [{ event_id: "__first__", code: "invalid_event" }] } },
    { status: 500, retry_after: "soon" },
    { status: 422 },
  ];
  let answer = 0;
  const flushId = "f1";
  // Answer every send, firing timers when nothing is in flight, until two idle timer rounds.
  const drain = async () => {
    let idle = 0;
    for (let round = 0; round < 80 && idle < 2; round += 1) {
      const facts = [];
      for (const s of pendingSends.splice(0)) {
        now += 5;
        const a = answers[answer++] ?? { status: 200, reply: { ok: true } };
        if (a.status !== null && a.status >= 200 && a.status < 300) {
          const reply = JSON.parse(JSON.stringify(a.reply ?? null).replace("__first__", s.event_ids[0] ?? ""));
          facts.push({ type: "send_succeeded", now_ms: now, batch_id: s.batch_id, status: a.status, reply });
        } else {
          facts.push({
            type: "send_failed", now_ms: now, batch_id: s.batch_id, status: a.status,
            error: a.error ?? `http ${a.status}`, retry_after: a.retry_after ?? null, jitter: 0.25,
          });
        }
      }
      if (facts.length) {
        idle = 0;
      } else {
        if (!timers.size) break;
        idle += 1;
        // Fire the earliest timer.
        const [key, at] = [...timers.entries()].sort((x, y) => x[1] - y[1])[0];
        timers.delete(key);
        now = Math.max(now, at);
        facts.push({ type: "timer_fired", now_ms: now, key });
      }
      await handle(facts);
    }
  };
  await handle([{ type: "flush_requested", now_ms: now, flush_id: flushId }]);
  await drain();
  if (answer < answers.length) throw new Error(`scripts/core_exercise.mjs: the core made only ${answer} sends, the workout needs ${answers.length}`);

  // Dead letters: retry the restored one (sent and acked), drop one isolated above.
  await handle([{ type: "dead_letter_retried", now_ms: now, event_id: dead.env.event_id, flush_id: "f2" }]);
  await drain();
  await handle([{ type: "dead_letter_dropped", now_ms: now, event_id: queue[0].env.event_id }]);
  await handle([{ type: "dead_letter_dropped", now_ms: now, event_id: "unknown" }]);
  await handle([{ type: "dead_letter_retried", now_ms: now, event_id: "unknown", flush_id: "f3" }]);

  now += 10;
  await handle([{ type: "went_offline", now_ms: now }]);
  await handle([{ type: "visibility_changed", now_ms: now, hidden: true }]);
  await handle([{ type: "network_changed", now_ms: now, save_data: true, effective_type: "2g" }]);
  await handle([{ type: "visibility_changed", now_ms: now, hidden: false }]);
  await handle([{ type: "network_changed", now_ms: now, save_data: false, effective_type: "4g" }]);
  await recordEvent(envelope("offline_click", {}));
  await recordEvent(envelope("offline_ad", {}), { category: "marketing" });
  now += 10;
  await handle([{ type: "went_online", now_ms: now }]);
  await handle([{ type: "beaconed", now_ms: now, event_ids: queue.slice(-2).map((r) => r.env.event_id), queued: true, until_ms: now + 12000 }]);
  await handle([{ type: "beaconed", now_ms: now, event_ids: [], queued: false }]);
  // A send decided before the beacon: the shim does not start it.
  const crossed = pendingSends.shift();
  await handle([{ type: "send_skipped", now_ms: now, batch_id: crossed ? crossed.batch_id : "no-such-batch" }]);
  await handle([{ type: "storage_failed", now_ms: now, operation: "put", error: "QuotaExceededError" }]);
  await handle([{ type: "consent_changed", now_ms: now, consent: { analytics: true, marketing: false } }]);
  await handle([{ type: "consent_changed", now_ms: now, consent: "denied" }]);
  await handle([{ type: "consent_changed", now_ms: now, consent: "granted" }]);
  await drain();
  // An item older than maxAgeMs is dropped when the page comes back online.
  await handle([{ type: "went_offline", now_ms: now }]);
  await recordEvent(envelope("stale", {}));
  now += 40 * 24 * 3600 * 1000;
  await handle([{ type: "went_online", now_ms: now }]);
  await drain();

  const missing = factTypes.filter((t) => !sent.has(t));
  if (missing.length) {
    throw new Error(`scripts/core_exercise.mjs does not send these fact types: ${missing.join(", ")}; ` +
      "add them, so that what they import is traced into the trimmed stdlib");
  }
  return transcript;
}
