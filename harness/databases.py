"""Real records databases for tests: a SQLite file, or a fresh database on the test
PostgreSQL server (reached through a proxy), each with an outage switch."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from agent.records import RecordsStore
from harness.fakes.tcp_proxy import TcpProxy

BACKENDS = ("sqlite", "postgresql")


@dataclass
class RecordsDatabase:
    """One empty records database. `cut()` makes every write fail until `restore()`:
    SQLite is locked by another connection, PostgreSQL's connections are dropped."""

    backend: str
    url: str
    proxy: TcpProxy | None = None
    _lock: sqlite3.Connection | None = field(default=None, repr=False)

    def store(self) -> RecordsStore:
        # a short busy timeout: a locked SQLite file fails fast instead of waiting 5 s
        return RecordsStore(self.url, sqlite_busy_timeout_ms=50)

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        path = make_url(self.url).database
        self._lock = sqlite3.connect(str(path), timeout=5, isolation_level=None)
        self._lock.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None


@asynccontextmanager
async def open_database(
    backend: str, *, tmp_path: Path, postgres_url: str | None
) -> AsyncIterator[RecordsDatabase]:
    if backend == "sqlite":
        yield RecordsDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'records' / 'tutor.db'}")
        return
    assert postgres_url is not None
    server = make_url(postgres_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_url, name)
    async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        url = server.set(port=proxy.port, database=name)
        yield RecordsDatabase("postgresql", url.render_as_string(hide_password=False), proxy=proxy)
    await drop_database(postgres_url, name)


async def _as_admin(server: str, statement: str) -> None:
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def create_database(server: str, name: str) -> str:
    """A new, empty database `name` on the PostgreSQL server at `server`; its URL."""
    await _as_admin(server, f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(server: str, name: str) -> None:
    """Drop database `name` from the PostgreSQL server at `server`, its sessions closed."""
    await _as_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
