// A typed use of the published package, checked by `tsc --noEmit` against the
// installed tarball's declarations (tests/npm/test_npm_package.py). Every
// `@ts-expect-error` line is a mistake the declarations must refuse: if one
// type-checks, tsc reports the directive as unused and the test fails.

import { revu } from "revu";
import defaultRevu, { type OutboxEntry, type RevuOptions, type RevuStatus } from "revu";

const options: RevuOptions = {
  apiKey: "k",
  host: "https://ingest.example.com",
  assetsUrl: "/revu/",
  flushAt: 10,
  maxQueue: 5000,
  maxEventBytes: 16384,
  compression: "gzip",
  compressMinBytes: 2048,
  drainBatch: 500,
  drainBatchBytes: 262144,
  slowDrainIntervalMs: 60000,
  tabs: false,
  debug: "verbose",
  storage: "localStorage",
  storageKey: "shop",
  consent: { analytics: true, ads: false },
  coalesce: { typing: { windowMs: 1000, ttlMs: 5000 } },
};
revu.init(options);

const id: string | null = revu.record("signup", { plan: "pro" }, { stream: "chat-1", priority: "high", keys: { messageId: "m1" }, pii: ["email"] });
const same: boolean = defaultRevu === revu;

async function main(): Promise<void> {
  const ok: boolean = await revu.flush();
  const live: true = await revu.ready;
  const status: RevuStatus = revu.status();
  if ("acked" in status) {
    const acked: number = status.acked;
    const compression: "off" | "gzip" | "pending" = status.compression;
  }
  const off = revu.on("outbox:retry", (d) => {
    const delay: number = d.delayMs;
    const http: number | null = d.status;
  });
  off();
  revu.on("error", (e) => {
    if (e.code === "core_unavailable" || e.code === "invalid_options") console.warn(e.message);
  });
  revu.on("outbox:sent", (d) => d.eventIds.length + d.bytes);
  revu.outbox.onRollback((failure) => console.log(failure.error.reason, failure.mutation?.url));
  const m = revu.outbox.enqueue({ url: "/v1/chat/room/messages", body: { text: "hi" }, stream: "room" });
  if (m) await revu.outbox.retry(m.id);
  for (const entry of revu.outbox.entries() as OutboxEntry[]) {
    if (entry.kind === "quarantined") console.log(entry.reason, entry.sample);
    else console.log(entry.envelope.event_id, entry.status);
  }
  revu.consent("denied");
  console.log(id, same, ok, live);
}
main();

// -- mistakes the declarations must refuse ---------------------------------------

// @ts-expect-error: an option name that does not exist
revu.init({ apiKey: "k", flushEvery: 10 });
// @ts-expect-error: apiKey is required
revu.init({ host: "https://ingest.example.com" });
// @ts-expect-error: debug is a boolean or "verbose"
revu.init({ apiKey: "k", debug: "loud" });
// @ts-expect-error: compression is "auto", "gzip" or "off"
revu.init({ apiKey: "k", compression: "br" });
// @ts-expect-error: no such event
revu.on("outbox:retried", () => {});
// @ts-expect-error: outbox:retry's payload has no eventId (it is eventIds)
revu.on("outbox:retry", (d) => d.eventId);
// @ts-expect-error: error payloads carry a code, and "nope" is not one
revu.on("error", (e) => e.code === "nope");
// @ts-expect-error: priority is "high", "normal" or "low"
revu.record("x", {}, { priority: "urgent" });
// @ts-expect-error: flush() resolves a boolean, not a number
const n: Promise<number> = revu.flush();
// @ts-expect-error: consent takes "granted", "denied" or categories to booleans
revu.consent("yes");
// @ts-expect-error: a mutation needs a url
revu.outbox.enqueue({ body: "x" });
