"""Run the revu demo: the page on one origin, the ingest server on another.

    python demo/run_demo.py [--site-port 8000] [--ingest-port 8787]
                            [--db demo/revu-demo.sqlite3] [--dist dist]

The pages are served from http://localhost:<site-port>/ (demo/site/, with the
built SDK from dist/ at /revu/: pipeline.html is the one-screen demo, index.html
the full one) and the ingest server listens on
http://127.0.0.1:<ingest-port>. Different origins, as in production, so CORS
and credentialed beacons are exercised for real. Build dist/ first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.ingest_server import IngestServer  # noqa: E402
from demo.static_server import StaticServer  # noqa: E402

SITE_DIR = ROOT / "demo" / "site"
DEFAULT_INGEST_PORT = 8787


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve the revu demo page and a local ingest server")
    parser.add_argument("--site-port", type=int, default=8000, help="page port on localhost (default 8000)")
    parser.add_argument(
        "--ingest-port", type=int, default=DEFAULT_INGEST_PORT, help="ingest port on 127.0.0.1 (default 8787)"
    )
    parser.add_argument(
        "--db",
        default=str(ROOT / "demo" / "revu-demo.sqlite3"),
        help='SQLite file for received events, or ":memory:" (default demo/revu-demo.sqlite3)',
    )
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="built SDK folder holding revu.js (default dist)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    dist = Path(args.dist).resolve()
    if not (dist / "revu.js").is_file():
        print(
            f"error: {dist / 'revu.js'} not found.\n"
            "Build the SDK first (see the README: `npm run build`), then run this again.",
            file=sys.stderr,
        )
        return 2

    ingest = IngestServer("127.0.0.1", args.ingest_port, args.db, verbose=args.verbose).start()
    try:
        site = StaticServer({"/": SITE_DIR, "/revu/": dist}, "localhost", args.site_port, verbose=args.verbose).start()
    except OSError:
        ingest.stop()
        raise

    query = f"?ingest={ingest.url}" if ingest.port != DEFAULT_INGEST_PORT else ""
    page = f"{site.url}/pipeline.html{query}"
    print("revu demo", flush=True)
    print(f"  site:   {site.url}/  (demo/site/, SDK from {dist} at /revu/)")
    print(f"  ingest: {ingest.url}  (POST /v1/behavior/events, db: {args.db})")
    print(f"open {page}  (the pipeline on one screen)", flush=True)
    print(f"  or {site.url}/{query}  (the full demo: consent, PII, chat outbox, dead letters)", flush=True)
    print("Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping.")
    finally:
        site.stop()
        ingest.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
