// Runs the shim's side of a shared case file and prints what it got, for
// test_shared_cases.py to compare with the expected values in the file.
//   node tests/contract/run_js.mjs <stored|capture|rules|body|surrogate> <file>
import { readFileSync } from "node:fs";

import { captureEvent, captureMutation } from "../../js_shim/capture.js";
import { checkStored, repairSurrogates } from "../../js_shim/records.js";
import { BOOTSTRAP_RULES, rulesFor } from "../../js_shim/rules.js";
import { batchBody } from "../../js_shim/terminal.js";

const [kind, file] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(file, "utf8"));

const run = {
  stored: (c) => {
    const r = checkStored(c.id, c.raw, c.dead);
    return r.ok ? "ok" : r.reason;
  },
  capture: (c) => {
    try {
      const ctx = { eventId: c.event_id, nowMs: c.now_ms, seq: c.seq, rules: BOOTSTRAP_RULES };
      const got = c.kind === "event"
        ? captureEvent(c.event, c.properties, c.options, ctx)
        : captureMutation(c.spec, { ...ctx, idempotencyKey: c.idempotency_key });
      return { raw: got.raw };
    } catch (err) {
      return { error: err.code ?? String(err) };
    }
  },
  rules: (c) => rulesFor(c.options),
  body: (c) => batchBody(c.api_key, c.envs, c.now_ms),
  surrogate: (c) => repairSurrogates(c.text).text,
}[kind];

console.log(JSON.stringify(cases.map(run)));
