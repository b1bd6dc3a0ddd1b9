"""Test-wide setup: safe placeholder settings, no network beyond loopback, and real records
databases (a SQLite file, a PostgreSQL server on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# Placeholders so modules that read settings at import work offline; never real secrets.
PLACEHOLDER_ENV = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "test-secret-of-at-least-32-characters-x",
    "OPENAI_API_KEY": "test-openai-key-placeholder",
    # a worker built in a test (prewarm) keeps its records out of the repository
    "RECORDS_URL": f"sqlite+aiosqlite:///{tempfile.gettempdir()}/voice-tutor-tests/tutor.db",
}
for _name, _value in PLACEHOLDER_ENV.items():
    os.environ.setdefault(_name, _value)


class NonLoopbackConnectionError(OSError):
    """A test tried to reach something other than this machine."""


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NonLoopbackConnectionError(f"tests may only connect to loopback, not {address!r}")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    if host is not None and not _is_loopback(host):
        raise NonLoopbackConnectionError(f"tests may only resolve loopback names, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


# imported after the placeholders: these modules read settings at import
from harness import postgres  # noqa: E402
from harness.databases import BACKENDS, RecordsDatabase, open_database  # noqa: E402

socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def _environment_kept() -> Iterator[None]:
    """Each test leaves the environment as it found it: the framework's `AgentServer`
    exports the server settings it was given (LIVEKIT_URL, ...) to its job processes."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --- real records databases (SQLite file; PostgreSQL server from .ci/run or started here) ---


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """`TEST_POSTGRES_URL` (a server .ci/run started), else a server of our own."""
    if url := os.environ.get("TEST_POSTGRES_URL"):
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="voice-tutor-pg-"))
    try:
        yield postgres.start(data_dir)
    finally:
        postgres.stop(data_dir)


@pytest.fixture(params=BACKENDS)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RecordsDatabase]:
    """An empty records database, on each backend in turn."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    async with open_database(request.param, tmp_path=tmp_path, postgres_url=url) as db:
        yield db


# --- the real-server tier's own count, so a CI log shows it ran ---


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "realserver" in getattr(report, "keywords", {}):
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        terminalreporter.write_line(f"real-server tier: {summary}")
