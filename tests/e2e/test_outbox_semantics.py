"""Issue 3 acceptance in headless Chromium and Firefox ESR against the reference server:
consent purge, PII at rest, stream order across offline + reload, poison
isolation, exactly-once mutations across a reload mid-send."""

from __future__ import annotations

import json

from conftest import page_url, stored_records, wait_ready

SECRETS = ["alice@example.com", "+44 20 7946 0137", "4111 1111 1111 1111"]

# Every byte revu wrote: all localStorage values, and every record of every
# IndexedDB database (a CryptoKey serialises to "{}": its material is not readable).
DUMP_STORAGE = """async () => {
  const out = {localStorage: {}, indexedDB: {}};
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i); out.localStorage[k] = localStorage.getItem(k);
  }
  for (const {name} of await indexedDB.databases()) {
    const db = await new Promise((res, rej) => { const r = indexedDB.open(name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    out.indexedDB[name] = {};
    for (const store of db.objectStoreNames) {
      const rows = await new Promise((res) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => res(r.result); });
      const keys = await new Promise((res) => { const r = db.transaction(store).objectStore(store).getAllKeys(); r.onsuccess = () => res(r.result); });
      out.indexedDB[name][store] = rows.map((v, i) => ({key: keys[i], type: v && v.constructor && v.constructor.name,
        extractable: v && v.extractable, json: JSON.stringify(v)}));
    }
    db.close();
  }
  return out;
}"""


def _ids(state):
    return {e["event_id"] for e in state["events"]}


def test_consent_revoke_purges_stored_events_at_once(context, site, ingest, figures):
    ingest.set_faults({"offline": True})
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=100))
    wait_ready(page)
    analytics = page.evaluate("Array.from({length: 10}, (_, i) => revu.record('view', {i}))")
    marketing = page.evaluate("Array.from({length: 5}, (_, i) => revu.record('ad', {i}, {category: 'marketing'}))")
    assert stored_records(page) == 15
    # Purged in the same task as the call, before any async work could run.
    left = page.evaluate("""() => { revu.consent({analytics: true, marketing: false});
      return Object.keys(localStorage).filter(k => k.startsWith('revu:q:')).length; }""")
    assert left == 10
    page.wait_for_function("revu.status().dropped && revu.status().dropped.consent === 5")
    assert page.evaluate("revu.record('ad', {}, {category: 'marketing'})") is None, "still not allowed"
    page.evaluate("revu.consent('granted')")  # granting later does not bring them back
    ingest.set_faults({"offline": False})
    assert page.evaluate("revu.flush()") is True
    state = ingest.state()
    assert _ids(state) == set(analytics) and not (set(marketing) & _ids(state))
    figures.update(sent=15, purged=5, received=state["unique"], duplicates=state["duplicates"])


def test_pii_is_never_in_clear_in_storage(context, site, ingest, figures):
    ingest.set_faults({"offline": True})
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=100))
    wait_ready(page)
    ids = page.evaluate("""(s) => [
      revu.record('signup', {email: s[0], plan: 'pro'}, {pii: ['email']}),
      revu.record('call', {phone: s[1]}, {pii: true}),
      revu.record('pay', {card: s[2], amount: 5}, {pii: ['card']}),
    ]""", SECRETS)
    page.wait_for_function("Object.values(localStorage).filter(v => v.includes('\"sealed\"')).length === 3")
    dump = page.evaluate(DUMP_STORAGE)
    everything = "\n".join(list(dump["localStorage"].keys()) + list(dump["localStorage"].values())) + json.dumps(dump["indexedDB"])
    for secret in SECRETS:
        assert secret not in everything, f"{secret} found in storage"
    keys = [row for db in dump["indexedDB"].values() for rows in db.values() for row in rows]
    assert keys and all(row["type"] == "CryptoKey" and row["extractable"] is False for row in keys)
    assert '"plan":"pro"' in everything, "unflagged fields stay readable"
    assert page.evaluate("revu.status().pii") == "encrypted"
    # A reload opens the sealed records; delivery carries the real values.
    page.reload()
    wait_ready(page)
    ingest.set_faults({"offline": False})
    assert page.evaluate("revu.flush()") is True
    received = {e["event_id"]: e["properties"] for e in ingest.state()["events"]}
    assert received[ids[0]] == {"plan": "pro", "email": SECRETS[0]}
    assert received[ids[1]] == {"phone": SECRETS[1]}
    assert received[ids[2]]["card"] == SECRETS[2]
    figures.update(sent=3, received=len(received), secrets_found_in_storage=0)


def test_chat_stream_keeps_order_across_offline_and_reload_while_others_flow(context, site, ingest, figures):
    room_a = f"{ingest.url}/v1/chat/room-a/messages"
    context.route(room_a, lambda route: route.abort())  # room-a's backend is unreachable
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=1))
    wait_ready(page)
    enqueue = """([url, texts, stream]) => texts.map((text) =>
      revu.outbox.enqueue({url, body: {text}, stream}).id)"""
    page.evaluate(enqueue, [room_a, ["a1", "a2", "a3"], "room-a"])
    page.evaluate(enqueue, [f"{ingest.url}/v1/chat/room-b/messages", ["b1", "b2"], "room-b"])
    views = page.evaluate("Array.from({length: 5}, (_, i) => revu.record('view', {i}))")
    # room-b and analytics flow while room-a is blocked.
    state = ingest.wait_until(lambda s: len(s["messages"]) >= 2 and _ids(s) >= set(views), timeout_s=15)
    assert [m["text"] for m in state["messages"]] == ["b1", "b2"]
    # room-a retries on its own (its state alternates backing_off / sending).
    page.wait_for_function("revu.status().streams['room-a'] && revu.status().streams['room-a'].failures >= 2")
    page.evaluate(enqueue, [room_a, ["a4"], "room-a"])
    page.reload()  # still unreachable across the reload
    wait_ready(page)
    page.evaluate(enqueue, [room_a, ["a5"], "room-a"])
    context.unroute(room_a)
    page.evaluate("revu.flush()")
    state = ingest.wait_until(lambda s: len([m for m in s["messages"] if m["room"] == "room-a"]) >= 5, timeout_s=30)
    room = [m for m in state["messages"] if m["room"] == "room-a"]
    assert [m["text"] for m in room] == ["a1", "a2", "a3", "a4", "a5"]
    assert [m["seq_in_room"] for m in room] == [1, 2, 3, 4, 5]
    figures.update(messages=len(state["messages"]), replays=state["mutation_replays"], events=state["unique"])


def test_one_poison_event_in_a_batch_of_50(context, site, ingest, figures):
    ingest.set_faults({"poison_events": ["poison"]})
    page = context.new_page()
    page.goto(page_url(site, ingest, flushAt=50, maxBatch=50))
    wait_ready(page)
    page.evaluate("() => { window.__rollbacks = []; revu.outbox.onRollback((f) => window.__rollbacks.push(f)); }")
    ids = page.evaluate("Array.from({length: 50}, (_, i) => revu.record(i === 17 ? 'poison' : 'ok', {i}))")
    page.wait_for_function("revu.status().queued === 0 && revu.status().deadLettered === 1", timeout=30_000)
    state = ingest.state()
    good = set(ids) - {ids[17]}
    assert _ids(state) == good
    failed = [e for e in page.evaluate("revu.outbox.entries()") if e["status"] == "failed"]
    assert [e["id"] for e in failed] == [ids[17]] and failed[0]["error"]["reason"] == "http_422"
    rollbacks = page.evaluate("window.__rollbacks")
    assert len(rollbacks) == 1 and rollbacks[0]["envelope"]["event_id"] == ids[17]
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('revu:d:')).length") == 1
    # The page can retry it (the server now accepts it) or drop it.
    ingest.set_faults({"poison_events": []})
    assert page.evaluate(f"revu.outbox.retry('{ids[17]}')") is True
    assert ids[17] in _ids(ingest.state())
    figures.update(sent=50, received=ingest.state()["unique"], dead_lettered=1,
                   requests=len(state["requests"]))


def test_mutation_applied_exactly_once_across_a_reload_mid_send(context, site, ingest, figures):
    ingest.set_faults({"mutation_script": [{"delay_ms": 1500}]})
    page = context.new_page()
    page.goto(page_url(site, ingest))
    wait_ready(page)
    entry = page.evaluate("""(url) => revu.outbox.enqueue({url, body: {text: 'hello once'}, stream: 'room-x'})""",
                          f"{ingest.url}/v1/chat/room-x/messages")
    ingest.wait_until(lambda s: any(r.get("kind") == "mutation" for r in s["requests"]), timeout_s=10)
    page.reload()  # the request is on the wire (keepalive), its reply will be lost with the page
    wait_ready(page)
    state = ingest.wait_until(lambda s: s["mutation_replays"] >= 1, timeout_s=30)
    page.wait_for_function("revu.status().queued === 0")
    assert [m["text"] for m in state["messages"]] == ["hello once"]
    assert state["messages"][0]["idempotency_key"] == entry["idempotencyKey"]
    figures.update(enqueued=1, applied=len(state["messages"]), replays=state["mutation_replays"])
