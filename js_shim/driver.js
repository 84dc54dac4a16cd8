// fact -> core -> commands -> outcome facts. No policy: every decision comes
// from the core; this file only carries commands out and reports back.
//
// No fact is lost silently. Facts wait in `pending` until the core takes them;
// one that cannot be encoded is reported (`bad_fact`) and the others go on. If
// the core itself fails (Pyodide died, the Worker is gone, it answered
// garbage, or it sent `halt`), the driver reports `core_unavailable` once,
// settles every pending flush false, makes later flushes resolve false at
// once, and tells the page wiring (`onCoreLost`), which falls back to capture
// and the terminal beacon by the published rules. Facts that arrive after
// that are counted (`unhandled`) and dropped: what they were about (stored
// records) stays in storage for the next page's core.

/** @typedef {import("./types.js").Fact} Fact */
/** @typedef {import("./types.js").Command} Command */
/** @typedef {import("./types.js").Core} Core */

export class Driver {
  /**
   * @param {{
   *   queue: import("./queue_store.js").QueueStore,
   *   emitter: import("./emitter.js").Emitter,
   *   log: (level: string, message: string, extra?: unknown) => void,
   *   clock: {nowMs: () => number, jitter: () => number, soon: (fn: () => void) => void,
   *           timers: {set: (key: string, atMs: number, fn: () => void) => void, cancel: (key: string) => void}},
   *   post: (req: {url: string, method: string, headers: Record<string, string>, body: string,
   *                 keepalive: boolean, timeoutMs: number}) =>
   *         Promise<import("./transport/fetch_keepalive.js").SendOutcome>,
   *   onStatus: (status: object) => void,
   *   onRules?: (rules: object) => void,
   *   onCoreLost?: (reason: string) => void,
   *   onSend?: (batchId: string, eventIds: string[], timeoutMs: number) => void,
   *   onDeleted?: (eventIds: string[]) => void,
   *   onSendFailed?: (batchId: string, status: number|null) => void,
   *   skipSend?: (cmd: {kind: string, event_ids: string[]}) => boolean,
   * }} deps
   */
  constructor(deps) {
    this.deps = deps;
    /** @type {Core|null} */
    this.core = null;
    /** @type {Fact[]} */
    this.pending = [];
    this.busy = false;
    this.scheduled = false;
    this.flushSeq = 0;
    /** Why the core stopped, once it has. @type {string|null} */
    this.lost = null;
    /** Facts that arrived after the core stopped. */
    this.unhandled = 0;
    /** @type {Map<string, (ok: boolean) => void>} */
    this.flushes = new Map();
  }

  /**
   * Hand the core its first fact, then everything that piled up before it.
   * @param {Core} core
   * @param {Fact} restored
   * @returns {Promise<void>}
   */
  async start(core, restored) {
    this.core = core;
    this.pending.unshift(restored);
    await this.pump();
  }

  /** The core could not load: pending flushes can never be acknowledged. */
  abandon() {
    this.lost = this.lost ?? "the core did not start";
    this.unhandled += this.pending.length;
    this.pending = [];
    this.settleAll();
  }

  settleAll() {
    for (const resolve of this.flushes.values()) resolve(false);
    this.flushes.clear();
  }

  /**
   * Queue a fact; facts go to the core together after the current task.
   * @param {{type: string} & Record<string, unknown>} fact  without now_ms
   * @returns {void}
   */
  push(fact) {
    if (this.lost !== null) {
      this.unhandled++;
      return;
    }
    this.pending.push({ now_ms: this.deps.clock.nowMs(), ...fact });
    if (this.core && !this.scheduled) {
      this.scheduled = true;
      this.deps.clock.soon(() => {
        this.scheduled = false;
        this.pump();
      });
    }
  }

  /** @returns {Promise<boolean>} resolves with the core's SettleFlush */
  flush() {
    return this.waitFor((flushId) => ({ type: "flush_requested", flush_id: flushId }));
  }

  /**
   * Push a fact that the core answers later with `SettleFlush(flush_id)`.
   * Without a live core that never comes: false at once.
   * @param {(flushId: string) => {type: string}} makeFact
   * @returns {Promise<boolean>}
   */
  waitFor(makeFact) {
    if (this.lost !== null) return Promise.resolve(false);
    const flushId = `f${++this.flushSeq}`;
    const promise = new Promise((resolve) => this.flushes.set(flushId, resolve));
    this.push(makeFact(flushId));
    return promise;
  }

  /**
   * The facts as one JSON list. A fact that cannot be encoded (a bug, or a
   * value that should never have got here) is reported and left out alone.
   * @param {Fact[]} facts
   * @returns {string}
   */
  encode(facts) {
    try {
      return JSON.stringify(facts);
    } catch (_) {
      const parts = [];
      for (const fact of facts) {
        try {
          parts.push(JSON.stringify(fact));
        } catch (err) {
          this.deps.log("error", `a ${String(fact && fact.type)} fact could not be encoded and was left out`, err);
          this.deps.emitter.emit("error", { code: "bad_fact", message: `a ${String(fact && fact.type)} fact could not be encoded` });
          if (fact && fact.type === "flush_requested") this.settle(fact.flush_id, false);
        }
      }
      return `[${parts.join(",")}]`;
    }
  }

  /** @returns {Promise<void>} */
  async pump() {
    if (this.busy || !this.core || this.lost !== null) return;
    this.busy = true;
    try {
      while (this.pending.length && this.lost === null) {
        const facts = this.pending;
        this.pending = [];
        let commands;
        try {
          const answer = await this.core.handle(this.encode(facts));
          commands = typeof answer === "string" ? JSON.parse(answer) : answer; // parsed when bodies were compressed
          if (!Array.isArray(commands)) throw new Error("the core's answer is not a list of commands");
        } catch (err) {
          this.fail(`${err && err.message ? err.message : err}`, facts.length);
          return;
        }
        for (const command of commands) {
          try {
            this.run(command);
          } catch (err) {
            this.deps.log("error", `command ${command && command.type} failed`, err);
            this.deps.emitter.emit("error", { code: "command_failed", message: String(err) });
          }
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /**
   * The core cannot go on.
   * @param {string} reason
   * @param {number} [unhandled]  facts it was given and did not answer
   */
  fail(reason, unhandled = 0) {
    if (this.lost !== null) return;
    this.lost = reason;
    this.unhandled += unhandled + this.pending.length;
    this.pending = [];
    this.settleAll();
    const message = `the revu core stopped (${reason}); revu keeps storing events and beacons them on page hide; the next page load delivers them`;
    this.deps.log("error", message);
    this.deps.emitter.emit("error", { code: "core_unavailable", message });
    if (this.deps.onCoreLost) this.deps.onCoreLost(reason);
  }

  /** @param {string} flushId @param {boolean} ok */
  settle(flushId, ok) {
    const resolve = this.flushes.get(flushId);
    this.flushes.delete(flushId);
    if (resolve) resolve(ok);
  }

  /**
   * Carry out one command.
   * @param {Command} cmd
   * @returns {void}
   */
  run(cmd) {
    const { queue, emitter, log, clock, post, onStatus } = this.deps;
    switch (cmd.type) {
      case "send":
        if (this.deps.skipSend && this.deps.skipSend(cmd)) {
          // The core decided this send before it heard of a terminal beacon
          // that carries its events: sending it now would deliver them twice.
          this.push({ type: "send_skipped", batch_id: cmd.batch_id });
          break;
        }
        if (this.deps.onSend) this.deps.onSend(cmd.batch_id, cmd.event_ids, cmd.timeout_ms);
        post({
          url: cmd.url,
          method: cmd.method,
          headers: cmd.body_bytes ? { ...cmd.headers, "Content-Encoding": "gzip" } : cmd.headers,
          body: cmd.body_bytes ? new Uint8Array(cmd.body_bytes) : cmd.body,
          keepalive: cmd.keepalive,
          timeoutMs: cmd.timeout_ms,
        }).then((out) => {
          if (!out.ok && this.deps.onSendFailed) this.deps.onSendFailed(cmd.batch_id, out.status ?? null);
          if (out.ok) this.push({ type: "send_succeeded", batch_id: cmd.batch_id, status: out.status, reply: out.replyText ?? null });
          else {
            this.push({
              type: "send_failed",
              batch_id: cmd.batch_id,
              status: out.status,
              error: out.error ?? "",
              retry_after: out.retryAfter ?? null,
              jitter: clock.jitter(),
            });
          }
        });
        break;
      case "delete":
        queue.remove(cmd.event_ids);
        if (this.deps.onDeleted) this.deps.onDeleted(cmd.event_ids);
        break;
      case "store_dead_letters":
        queue.storeDeadLetters(cmd.entries);
        if (this.deps.onDeleted) this.deps.onDeleted(cmd.entries.map((e) => e.env.event_id));
        break;
      case "delete_dead_letters":
        queue.deleteDeadLetters(cmd.event_ids);
        break;
      case "requeue":
        queue.requeue(cmd.records);
        break;
      case "quarantine":
        queue.quarantine(cmd.entries, clock.nowMs());
        break;
      case "set_timer":
        clock.timers.set(cmd.key, cmd.at_ms, () => this.push({ type: "timer_fired", key: cmd.key }));
        break;
      case "cancel_timer":
        clock.timers.cancel(cmd.key);
        break;
      case "settle_flush":
        this.settle(cmd.flush_id, cmd.ok);
        break;
      case "emit":
        emitter.emit(cmd.name, cmd.detail);
        break;
      case "report_status":
        onStatus(cmd.status);
        break;
      case "publish_rules":
        queue.setRules(cmd.rules);
        if (this.deps.onRules) this.deps.onRules(cmd.rules);
        break;
      case "halt":
        this.fail(`it halted: ${cmd.reason}`);
        break;
      case "log":
        log(cmd.level, cmd.message);
        break;
      default:
        throw new Error(`unknown command type ${JSON.stringify(cmd.type)}`);
    }
  }
}
