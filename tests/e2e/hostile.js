// A seeded fuzz of revu's public API with hostile arguments, run inside the
// page by tests/e2e/test_hostile_input.py. `args` = {seed, calls, valid}.
// Returns what happened; the test asserts on it.
async (args) => {
  // mulberry32: a small seeded PRNG, so a failing run can be replayed.
  let state = args.seed >>> 0;
  const rand = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (list) => list[Math.floor(rand() * list.length)];

  const cyclic = {};
  cyclic.self = cyclic;
  const trapThrows = new Proxy({}, new Proxy({}, { get: () => () => { throw new Error("every trap throws"); } }));
  const revocable = Proxy.revocable({}, {});
  revocable.revoke();
  const tenMB = "x".repeat(10 * 1024 * 1024);
  let deepArray = [];
  for (let i = 0; i < 10000; i++) deepArray = [deepArray];
  let deepObject = {};
  for (let i = 0; i < 10000; i++) deepObject = { a: deepObject };
  const getterThrows = { get boom() { throw new Error("getter"); } };
  const toJSONThrows = { toJSON() { throw new Error("toJSON"); } };
  const protoKey = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}}');
  const manyKeys = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i]));
  const typed = new Float64Array(1_000_000);
  const nullProto = Object.create(null);
  nullProto.a = 1;
  const symbolKeyed = { [Symbol("s")]: 1, ok: 2 };

  const hostile = () => pick([
    cyclic, 10n, Symbol("s"), () => 1, function named() {}, trapThrows, revocable.proxy, getterThrows, toJSONThrows,
    tenMB, deepArray, deepObject, "\uD800", "a\uDC00b", "😀\uD83D", NaN, Infinity, -Infinity, new Map([[1, 2]]),
    new Set([1]), typed, new Uint8Array(3), protoKey, manyKeys, null, undefined, {}, [], "", 0, -0, true, false,
    new Date(NaN), new Date(0), nullProto, symbolKeyed, window, document, document.body, [cyclic], { d: deepArray },
    { big: 10n }, { s: tenMB }, Object.freeze({ f: 1 }), new Error("e"), /re/g, Promise.resolve(1), new WeakMap(),
    [1, [2, [3, [4]]]], { nested: { s: "\uDBFF" } }, { n: Number.MAX_SAFE_INTEGER + 2 }, "x".repeat(300),
  ]);
  // Options and specs that are never valid (a valid one would change what
  // the test expects: consent, a real mutation).
  const hostileOptions = () => pick([
    hostile(), { stream: hostile() }, { priority: hostile() }, { keys: hostile() }, { category: tenMB },
    { category: hostile() }, { ttlMs: hostile() }, { pii: hostile() }, { bogus: 1 }, trapThrows, { stream: "" },
  ]);
  const hostileConsent = () => pick([
    hostile(), "yes", "GRANTED", { analytics: "yes" }, { "": true }, {}, [true], { a: trapThrows }, tenMB,
  ]);
  const notString = () => {
    let v;
    do v = hostile(); while (typeof v === "string"); // a string url may be a valid relative URL
    return v;
  };
  const hostileSpec = () => pick([
    hostile(), { url: notString() }, { url: tenMB }, { url: "javascript:alert(1)" }, { url: "ftp://x/y" },
    { url: trapThrows }, { method: hostile(), url: 42 }, { url: null, body: cyclic }, { url: "https://a.test", bogus: 1 },
    { url: "https://a.test", headers: hostile() === null ? 1 : { h: 1 } }, { url: "https://a.test", body: { s: tenMB } },
  ]);

  const escaped = [];
  const results = { records: 0, accepted: 0, refused: 0, valid: [], flushes: [], calls: {} };
  const call = (name, fn) => {
    results.calls[name] = (results.calls[name] || 0) + 1;
    try {
      return fn();
    } catch (err) {
      escaped.push(`${name}: ${err && err.message}`);
      return undefined;
    }
  };
  const validAt = new Set();
  while (validAt.size < args.valid) validAt.add(Math.floor(rand() * (args.calls + args.valid)));
  const listeners = [];
  for (let step = 0; step < args.calls + args.valid; step++) {
    if (validAt.has(step)) {
      const id = call("valid", () => revu.record("valid_event", { i: results.valid.length, seed: args.seed, step }));
      results.valid.push(id);
      continue;
    }
    switch (Math.floor(rand() * 8)) {
      case 0:
      case 1:
      case 2: {
        const id = call("record", () => revu.record(pick([hostile(), "e", "x".repeat(201), tenMB, "\uD800ok"]), hostile(), pick([undefined, null, hostileOptions()])));
        results.records++;
        if (typeof id === "string") results.accepted++;
        else results.refused++;
        break;
      }
      case 3:
        call("init", () => revu.init(pick([hostile(), { apiKey: hostile() }, { apiKey: "k", host: hostile() }])));
        break;
      case 4:
        call("consent", () => revu.consent(hostileConsent()));
        break;
      case 5: {
        const p = call("flush", () => revu.flush(hostile()));
        if (p && typeof p.then === "function") results.flushes.push(p);
        else escaped.push("flush did not return a promise");
        break;
      }
      case 6: {
        const off = call("on", () => revu.on(pick([hostile(), "error", "outbox:update", tenMB]), pick([hostile(), () => { throw new Error("listener"); }])));
        if (typeof off === "function") listeners.push(off);
        else escaped.push("on did not return a function");
        // A page does not keep hundreds of throwing listeners: each one is
        // logged by revu on every event, so keep a few live at a time.
        while (listeners.length > 5) call("unsubscribe", listeners.shift());
        break;
      }
      default:
        call("outbox.enqueue", () => revu.outbox.enqueue(hostileSpec()));
    }
    // Let the core keep up, as a busy page would, without waiting on it.
    if (step % 500 === 499) await new Promise((r) => setTimeout(r, 0));
  }
  for (const off of listeners) call("unsubscribe", off);
  const settled = await Promise.all(results.flushes.map((p) => p.then((v) => typeof v === "boolean", () => false)));
  results.flushesSettledAsBooleans = settled.every(Boolean);
  results.flushCount = settled.length;
  delete results.flushes;
  results.escaped = escaped;
  results.polluted = ({}).polluted === true || ({}).x === 1;
  return results;
}
