"""A process using revu.runtimes.cpython, for the multi-process tests.

    child.py record DB HOST COUNT PREFIX [options as JSON]
        init, record COUNT events (printing "id <event_id>" after each record()
        returned), print "flushing", then flush until nothing this process owns
        is left (or 30 s), print "done <json status>".
    child.py drain DB HOST [options as JSON]
        init and flush until the file holds no queued row (or 30 s), adopting
        what stopped processes left; print "done <json status>".
"""

import json
import sys
import time

from revu.runtimes import cpython as revu


def main() -> int:
    mode, db, host = sys.argv[1:4]
    rest = sys.argv[4:]
    count = int(rest.pop(0)) if mode == "record" else 0
    prefix = rest.pop(0) if mode == "record" else ""
    options = json.loads(rest[0]) if rest else {}
    pause = options.pop("pause_s", 0)
    revu.init("test-key", host=host, db_path=db, **options)
    for i in range(count):
        event_id = revu.record(f"{prefix}.event", {"i": i, "who": prefix})
        print("id", event_id, flush=True)
        if pause:
            time.sleep(pause)
    print("flushing", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        revu.flush(5)
        store = revu.status()["store"]
        if (store["owned"] if mode == "record" else store["rows"]) == 0:
            break
        time.sleep(0.1)
    status = revu.status()
    revu.close()
    print("done", json.dumps(status), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
