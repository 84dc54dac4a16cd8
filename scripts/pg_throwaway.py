"""A throwaway PostgreSQL cluster for tests and benchmarks (stdlib only).

    python3 scripts/pg_throwaway.py start DIR [--port 5432] [--set name=value ...]   # prints the URL
    python3 scripts/pg_throwaway.py stop DIR                                          # stops it, removes DIR

The cluster lives entirely in DIR (data, log, Unix socket) and listens on a
Unix socket only (no TCP port is opened), so several clusters on one machine
never collide. PostgreSQL refuses to run as root: as root, initdb and pg_ctl
run as the unprivileged ``postgres`` user (``runuser``), which Debian's
``postgresql`` package creates. Authentication is ``trust`` for that socket.

Test settings by default: ``fsync=off`` and ``synchronous_commit=off`` (a
throwaway cluster need not survive a power cut); ``--durable`` keeps
PostgreSQL's defaults (the benchmark uses it).
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
COMMON_SETTINGS = {"max_connections": "200", "shared_buffers": "128MB"}


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    return Path(found[-1]).parent


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def start(directory: str | Path, port: int = 5432, settings: dict[str, str] | None = None,
          durable: bool = False) -> str:
    """Create and start a cluster in ``directory``; returns its URL.

    Raises:
        FileNotFoundError: PostgreSQL is not installed.
        subprocess.CalledProcessError: initdb or pg_ctl failed (the log is in
            ``directory``/postgres.log).
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(directory, pw.pw_uid, pw.pw_gid)
    os.chmod(directory, 0o700)
    binaries = bin_dir()
    data = directory / "data"
    log = directory / "postgres.log"
    subprocess.run(
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"]),
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    options = {**COMMON_SETTINGS, **({} if durable else FAST_SETTINGS), **(settings or {})}
    options.update({"listen_addresses": "''", "unix_socket_directories": f"'{directory}'", "port": str(port)})
    opts = " ".join(f"-c {k}={v}" for k, v in options.items())
    subprocess.run(
        _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    return url(directory, port)


def url(directory: str | Path, port: int = 5432) -> str:
    return f"postgresql://postgres@/postgres?host={Path(directory).resolve()}&port={port}"


def stop(directory: str | Path) -> None:
    """Stop the cluster (fast shutdown) and remove ``directory``. Idempotent."""
    directory = Path(directory).resolve()
    data = directory / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start")
    s.add_argument("dir")
    s.add_argument("--port", type=int, default=5432)
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    s.add_argument("--durable", action="store_true", help="keep fsync and synchronous_commit on")
    t = sub.add_parser("stop")
    t.add_argument("dir")
    args = parser.parse_args(argv)
    if args.command == "start":
        extra = dict(item.split("=", 1) for item in args.set)
        try:
            print(start(args.dir, args.port, extra, args.durable))
        except subprocess.CalledProcessError as exc:
            log = Path(args.dir) / "postgres.log"
            detail = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            if log.exists():
                detail += log.read_text(errors="replace")[-2000:]
            print(f"pg_throwaway: {exc}\n{detail}", file=sys.stderr)
            return 1
    else:
        stop(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
