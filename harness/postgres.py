"""A throwaway PostgreSQL server on 127.0.0.1 for the records tests (Debian's `postgresql`).

`.ci/run` starts one for the whole run and exports `TEST_POSTGRES_URL`:

    python -m harness.postgres start DIR     # prints the URL
    python -m harness.postgres stop DIR

Without `TEST_POSTGRES_URL` the test session starts its own the same way. PostgreSQL
refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

DB_USER = "tutor_test"
PORT_FILE = "port"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here; the message says how to install them."""


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed: `apt-get install postgresql` "
            "(or set TEST_POSTGRES_URL to a server the tests may create databases on)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")


def start(data_dir: Path) -> str:
    """Initialise and start a server in `data_dir` (its parents must be traversable by the
    server's user, e.g. a directory under /tmp); return its asyncpg URL."""
    binaries = bin_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    cluster = data_dir / "cluster"
    _run(
        [
            str(binaries / "initdb"),
            *("-D", str(cluster), "-U", DB_USER, "-E", "UTF8"),
            "--auth=trust",
            "--no-sync",
        ]
    )
    port = _free_port()
    options = f"-p {port} -k {cluster} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(
        [
            str(binaries / "pg_ctl"),
            *("-D", str(cluster), "-o", options, "-l", str(cluster / "server.log")),
            *("-w", "-t", "60", "start"),
        ]
    )
    (data_dir / PORT_FILE).write_text(str(port))
    return f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{port}/postgres"


def stop(data_dir: Path) -> None:
    cluster = data_dir / "cluster"
    if cluster.exists():
        subprocess.run(
            _as_server_user(
                [str(bin_dir() / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python -m harness.postgres start|stop DIR")
    if sys.argv[1] == "start":
        print(start(Path(sys.argv[2])))
    else:
        stop(Path(sys.argv[2]))
