"""`python -m agent.workers.health [WORKER]`: the container health check of one worker replica.

A worker started with `WORKER_HTTP_PORT=0` listens on a port the system picks (so replicas
sharing one network namespace never collide) and writes it to `port_file(WORKER)` once it
is listening. This check reads that port (or `WORKER_HTTP_PORT` when it is fixed) and asks
the worker's health endpoint. Without WORKER, the one worker whose port file is in this
temp directory (a container runs one). Exit 0: healthy; 1: not listening or not answering.
It imports nothing heavy: it runs every few seconds per replica.
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TIMEOUT = 3.0


def port_file(worker: str) -> Path:
    """Where a worker writes its health port (per container: its own temp directory)."""
    return Path(tempfile.gettempdir()) / f"voice-tutor-{worker}.port"


def health_port(worker: str | None) -> int | None:
    fixed = int(os.environ.get("WORKER_HTTP_PORT") or 0)
    if fixed:
        return fixed
    if worker is None:
        found = sorted(Path(tempfile.gettempdir()).glob(port_file("*").name))
        if len(found) != 1:
            return None
        path = found[0]
    else:
        path = port_file(worker)
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1:
        print("usage: python -m agent.workers.health [WORKER_NAME]", file=sys.stderr)
        return 2
    worker = args[0] if args else None
    name = worker or "worker"
    port = health_port(worker)
    if port is None:
        print(f"{name}: not listening yet (no single {port_file(worker or '*')})", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=TIMEOUT) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as e:
        print(f"{name}: health endpoint on port {port} did not answer ({e})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
