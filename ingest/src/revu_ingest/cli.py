"""``revu-ingest serve``: the command line.

    revu-ingest serve --db sqlite:///events.db --port 8787
    revu-ingest serve --db postgresql://user:pass@db/revu --host 0.0.0.0 --port 8787 --workers 4 \\
        --allow-origin https://www.example.com --api-key "$REVU_API_KEY"
"""

from __future__ import annotations

import argparse
import os
import sys

from ._config import DEFAULT_GRACEFUL_TIMEOUT_S, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PREFLIGHT_MAX_AGE_S, Settings
from ._wire import DEFAULT_MAX_BATCH_EVENTS, DEFAULT_MAX_BODY_BYTES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revu-ingest", description="revu ingest service")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the ingest endpoint (until SIGINT/SIGTERM)")
    s.add_argument("--db", default=os.environ.get("REVU_INGEST_DB", "sqlite:///revu-ingest.sqlite3"),
                   help="sqlite:///path.db (default sqlite:///revu-ingest.sqlite3) or postgresql://...; "
                        "env REVU_INGEST_DB")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port, 0 for any free one (default {DEFAULT_PORT})")
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a page origin allowed by CORS, e.g. https://www.example.com (repeat; default: any)")
    s.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="an accepted api_key (repeat; env REVU_INGEST_API_KEYS, comma-separated). "
                        "Default: any non-empty key")
    s.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"413 above this, on the wire and after gzip decoding (default {DEFAULT_MAX_BODY_BYTES})")
    s.add_argument("--max-batch-events", type=int, default=DEFAULT_MAX_BATCH_EVENTS,
                   help=f"413 for a batch with more envelopes (default {DEFAULT_MAX_BATCH_EVENTS})")
    s.add_argument("--preflight-max-age", type=int, default=DEFAULT_PREFLIGHT_MAX_AGE_S,
                   help=f"Access-Control-Max-Age in seconds (default {DEFAULT_PREFLIGHT_MAX_AGE_S})")
    s.add_argument("--graceful-timeout", type=float, default=DEFAULT_GRACEFUL_TIMEOUT_S,
                   help=f"on SIGTERM, seconds to finish requests in flight (default {DEFAULT_GRACEFUL_TIMEOUT_S:g})")
    s.add_argument("--pool-min", type=int, default=None, help="PostgreSQL pool size per process, minimum (default 2)")
    s.add_argument("--pool-max", type=int, default=None, help="PostgreSQL pool size per process, maximum (default 10)")
    s.add_argument("--group-writes", type=int, default=None,
                   help="PostgreSQL: event writes running at once per process; the batches of requests that "
                        "arrive meanwhile are written together, in one transaction (default 4)")
    s.add_argument("--no-chat", action="store_true",
                   help="disable the reference mutation endpoint POST /v1/chat/<room>/messages")
    s.add_argument("--no-access-log", action="store_true", help="no log line per request")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument("--test-faults", action="store_true",
                   help="TESTS AND DEMO ONLY: add the fault layer and its /__control/ endpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keys = list(args.api_key)
    env_keys = os.environ.get("REVU_INGEST_API_KEYS", "")
    keys += [k.strip() for k in env_keys.split(",") if k.strip()]
    try:
        settings = Settings(
            db_url=args.db,
            host=args.host,
            port=args.port,
            workers=args.workers,
            allowed_origins=frozenset(o.rstrip("/") for o in args.allow_origin),
            api_keys=frozenset(keys),
            max_body_bytes=args.max_body_bytes,
            max_batch_events=args.max_batch_events,
            preflight_max_age_s=args.preflight_max_age,
            graceful_timeout_s=args.graceful_timeout,
            chat=not args.no_chat,
            pool_min=args.pool_min,
            pool_max=args.pool_max,
            group_writes=args.group_writes,
            access_log=not args.no_access_log,
            test_faults=args.test_faults,
        )
        from ._server import serve

        return serve(settings, args.log_level)
    except ValueError as exc:
        print(f"revu-ingest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
