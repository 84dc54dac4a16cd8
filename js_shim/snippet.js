// The copy-paste snippet (README "Install: snippet"), before minification.
// It defines `window.revu` as a stub that queues calls until revu.js (loaded
// async) replays them in order (index.js `adoptStub`):
//   - record() returns an event_id at once (the id the real record uses);
//     until revu.js runs, such events live only in this page's memory;
//   - flush() returns a Promise settled with the real flush's result;
//   - on() returns an unsubscribe function that works before and after;
//   - revu.ready settles like the real one.
// `build_dist.py` minifies it into dist/snippet.min.js; tests/e2e runs that file.
(function (w, d, src) {
  var r = (w.revu = w.revu || {});
  if (r.version || r._q) return;
  var q = (r._q = []);
  var c = w.crypto;
  function id() {
    return c.randomUUID ? c.randomUUID() : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (x) {
      return (x ^ (c.getRandomValues(new Uint8Array(1))[0] & (15 >> (x / 4)))).toString(16);
    });
  }
  function stub(m) {
    return function () {
      var e = { m: m, a: [].slice.call(arguments) };
      q.push(e);
      if (m == "record") return (e.id = id());
      if (m == "flush" || m == "outbox.retry") return new Promise(function (y) { e.y = y; });
      if (m == "on") return function () { e.off = 1; if (e.u) e.u(); };
    };
  }
  ["init", "record", "flush", "consent", "on"].forEach(function (m) { r[m] = stub(m); });
  r.outbox = { enqueue: stub("outbox.enqueue"), retry: stub("outbox.retry"), drop: stub("outbox.drop") };
  r.ready = new Promise(function (y, n) { r._y = y; r._n = n; });
  var s = d.createElement("script");
  s.async = true;
  s.src = src;
  d.head.appendChild(s);
})(window, document, "/revu/revu.js");
