// fact -> core -> commands -> outcome facts. No policy: every decision comes
// from the core; this file only carries commands out and reports back.

/** @typedef {import("./types.js").Fact} Fact */
/** @typedef {import("./types.js").Command} Command */
/** @typedef {import("./types.js").Core} Core */

export class Driver {
  /**
   * @param {{
   *   capture: import("./capture.js").Capture,
   *   emitter: import("./emitter.js").Emitter,
   *   log: (level: string, message: string, extra?: unknown) => void,
   *   clock: {nowMs: () => number, jitter: () => number, soon: (fn: () => void) => void,
   *           timers: {set: (key: string, atMs: number, fn: () => void) => void, cancel: (key: string) => void}},
   *   post: (req: {url: string, method: string, headers: Record<string, string>, body: string,
   *                 keepalive: boolean, timeoutMs: number}) =>
   *         Promise<import("./transport/fetch_keepalive.js").SendOutcome>,
   *   onStatus: (status: object) => void,
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
    for (const resolve of this.flushes.values()) resolve(false);
    this.flushes.clear();
  }

  /**
   * Queue a fact; facts go to the core together after the current task.
   * @param {{type: string} & Record<string, unknown>} fact  without now_ms
   * @returns {void}
   */
  push(fact) {
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
   * @param {(flushId: string) => {type: string}} makeFact
   * @returns {Promise<boolean>}
   */
  waitFor(makeFact) {
    const flushId = `f${++this.flushSeq}`;
    const promise = new Promise((resolve) => this.flushes.set(flushId, resolve));
    this.push(makeFact(flushId));
    return promise;
  }

  /** @returns {Promise<void>} */
  async pump() {
    if (this.busy || !this.core) return;
    this.busy = true;
    try {
      while (this.pending.length) {
        const facts = this.pending;
        this.pending = [];
        const commands = JSON.parse(await this.core.handle(JSON.stringify(facts)));
        for (const command of commands) {
          try {
            this.run(command);
          } catch (err) {
            this.deps.log("error", `command ${command.type} failed`, err);
            this.deps.emitter.emit("error", { code: "command_failed", message: String(err) });
          }
        }
      }
    } catch (err) {
      this.deps.log("error", "the core failed", err);
      this.deps.emitter.emit("error", { code: "core_failed", message: String(err) });
    } finally {
      this.busy = false;
    }
  }

  /**
   * Carry out one command.
   * @param {Command} cmd
   * @returns {void}
   */
  run(cmd) {
    const { capture, emitter, log, clock, post, onStatus } = this.deps;
    switch (cmd.type) {
      case "send":
        post({
          url: cmd.url,
          method: cmd.method,
          headers: cmd.headers,
          body: cmd.body,
          keepalive: cmd.keepalive,
          timeoutMs: cmd.timeout_ms,
        }).then((out) => {
          if (out.ok) this.push({ type: "send_succeeded", batch_id: cmd.batch_id, status: out.status, reply: out.reply ?? null });
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
        capture.remove(cmd.event_ids);
        break;
      case "store_dead_letters":
        capture.storeDeadLetters(cmd.entries);
        break;
      case "delete_dead_letters":
        capture.deleteDeadLetters(cmd.event_ids);
        break;
      case "requeue":
        capture.requeue(cmd.records);
        break;
      case "set_timer":
        clock.timers.set(cmd.key, cmd.at_ms, () => this.push({ type: "timer_fired", key: cmd.key }));
        break;
      case "cancel_timer":
        clock.timers.cancel(cmd.key);
        break;
      case "settle_flush": {
        const resolve = this.flushes.get(cmd.flush_id);
        this.flushes.delete(cmd.flush_id);
        if (resolve) resolve(cmd.ok);
        break;
      }
      case "emit":
        emitter.emit(cmd.name, cmd.detail);
        break;
      case "report_status":
        onStatus(cmd.status);
        break;
      case "publish_rules":
        capture.setRules(cmd.rules);
        break;
      case "log":
        log(cmd.level, cmd.message);
        break;
      default:
        throw new Error(`unknown command type ${JSON.stringify(cmd.type)}`);
    }
  }
}
