"""The records store: one async SQLAlchemy engine over SQLite (default) or PostgreSQL.

`RECORDS_URL` picks the database: `sqlite+aiosqlite:///data/tutor.db` (a file created on
first use, WAL mode) or `postgresql+asyncpg://user:pass@host/db`. The schema is created and
upgraded by the Alembic migrations in `agent/records/migrations` (`ensure_schema`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agent.records.models import (
    AlertRecord,
    FlagRecord,
    HandoffGap,
    HandoffRecord,
    Record,
    SessionEnded,
    SessionResumed,
    SessionStarted,
    TurnRecord,
)
from agent.records.schema import (
    AlertRow,
    FlagRow,
    HandoffRow,
    SessionRow,
    TurnRow,
)

logger = logging.getLogger("tutor.records")
T = TypeVar("T")
V = TypeVar("V")
WRITE_ATTEMPTS = 3  # each waits up to the busy timeout

DEFAULT_URL = "sqlite+aiosqlite:///data/tutor.db"
DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


class RecordsConfigError(ValueError):
    """`RECORDS_URL` is unusable; the message is one line saying why and what works."""


def normalize_url(url: str) -> URL:
    """The async driver URL for `url` (plain `sqlite://` and `postgresql://` are accepted)."""
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise RecordsConfigError(
            "RECORDS_URL is not a database URL; use sqlite+aiosqlite:///data/tutor.db "
            "or postgresql+asyncpg://user:password@host:5432/dbname"
        ) from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise RecordsConfigError(
            f"RECORDS_URL uses unsupported database {parsed.drivername!r}; use "
            "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://..."
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise RecordsConfigError(
            "RECORDS_URL must name a SQLite file (e.g. sqlite+aiosqlite:///data/tutor.db): "
            "an in-memory database is not shared between workers"
        )
    return parsed


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def utc_now() -> datetime:
    """Now, as the records store keeps times (naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _maybe_utc(ts: float | None) -> datetime | None:
    return None if ts is None else _utc(ts)


def row_columns(record: Record, **renamed: str) -> dict[str, Any]:
    """A record's fields as its row's columns (`field="column"` where the row names it
    otherwise): POSIX times as stored times, JSON values as plain lists and dicts."""
    columns: dict[str, Any] = {}
    for item in fields(record):
        value = getattr(record, item.name)
        if item.name == "at" or item.name.endswith("_at"):
            value = _maybe_utc(value)
        elif isinstance(value, tuple | list):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        columns[renamed.get(item.name, item.name)] = value
    return columns


def from_row(view: type[V], row: Any, **given: Any) -> V:
    """A dataclass `view` of a result row: each field from the row's column of that name,
    unless `given`."""
    values = {
        f.name: given[f.name] if f.name in given else getattr(row, f.name) for f in fields(view)
    }
    return view(**values)


def counted(row: type[Any], session_id: Any, *where: Any) -> Any:
    """How many `row`s the session `session_id` names has (a correlated subquery), of those
    `where` holds if given."""
    return select(func.count(row.id)).where(row.session_id == session_id, *where).scalar_subquery()


def exported(row: Any, *columns: str | tuple[str, str]) -> dict[str, Any]:
    """A row as the export writes it: each column under its name (or `(key, column)`),
    times in ISO 8601 UTC."""
    document: dict[str, Any] = {}
    for column in columns:
        key, name = column if isinstance(column, tuple) else (column, column)
        value = getattr(row, name)
        document[key] = iso(value) if isinstance(value, datetime) else value
    return document


@dataclass(frozen=True)
class SessionSummary:
    id: str
    student: str
    room: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    turns: int
    flags: int
    subjects: list[str]


class RecordsStore:
    """The database behind every record. Create it once per process; `aclose` at exit."""

    def __init__(
        self,
        url: str | URL,
        *,
        sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        **engine_options: Any,
    ) -> None:
        self.url = normalize_url(url) if isinstance(url, str) else url
        self.is_sqlite = self.url.drivername.startswith("sqlite")
        if self.is_sqlite:
            Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options)
        if self.is_sqlite:
            event.listen(
                self.engine.sync_engine,
                "connect",
                functools.partial(_sqlite_pragmas, busy_timeout_ms=sqlite_busy_timeout_ms),
            )
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    def describe(self) -> str:
        """The URL without its password (for messages and logs)."""
        return self.url.render_as_string(hide_password=True)

    async def aclose(self) -> None:
        await self.engine.dispose()

    # schema

    async def ensure_schema(self) -> None:
        """Create or upgrade the tables to the newest migration (once per store)."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                async with self.engine.connect() as conn:
                    try:
                        await conn.run_sync(upgrade_schema)
                        await conn.commit()
                    finally:
                        if self.is_sqlite:
                            # it ran with foreign keys off: not a connection to pool again
                            await conn.invalidate()
                self._schema_ready = True

    # writing

    async def write_waiting(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = WRITE_ATTEMPTS
    ) -> T:
        """Run `work` in one write transaction. A SQLite file still locked after the busy
        timeout (a burst of writers: a class joining while workers write records) is tried
        again, a bounded number of times, so writers queue instead of failing."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.engine.begin() as conn:
                    return await work(conn)
            except OperationalError as exc:
                if not (self.is_sqlite and "locked" in str(exc.orig)) or attempt == attempts:
                    raise
                logger.info("records store busy, writing again", extra={"attempt": attempt})
        raise AssertionError("unreachable")

    async def write(self, records: Sequence[Record]) -> None:
        """Write `records` in order, in one transaction; writing the same ones again is a
        no-op (natural keys), so a batch can be retried safely."""
        await self.ensure_schema()
        async with self.engine.begin() as conn:
            for record in records:
                await self._write_one(conn, record)

    async def _write_one(self, conn: AsyncConnection, record: Record) -> None:
        match record:
            case SessionStarted():
                columns = row_columns(record, session_id="id", at="started_at")
                await self._insert_ignore(conn, SessionRow, **columns)
            case SessionResumed():
                at = _utc(record.at)
                await _set_session(
                    conn,
                    record.session_id,
                    SessionRow.resumed_at < at,
                    resumed_at=at,
                    ended_at=None,
                    end_reason=None,
                )
            case SessionEnded():
                # an earlier job's end, written after a later job resumed it, is history
                at = _utc(record.at)
                await _set_session(
                    conn,
                    record.session_id,
                    SessionRow.resumed_at <= at,
                    ended_at=at,
                    end_reason=record.reason[:64],
                )
            case TurnRecord():
                await self._insert_ignore(conn, TurnRow, **row_columns(record))
            case HandoffRecord():
                await self._insert_ignore(conn, HandoffRow, **row_columns(record))
            case HandoffGap():
                await conn.execute(
                    update(HandoffRow)
                    .where(
                        HandoffRow.session_id == record.session_id,
                        HandoffRow.handoff_id == record.handoff_id,
                    )
                    .values(silence_gap_s=record.seconds)
                )
            case FlagRecord():
                await self._insert_ignore(conn, FlagRow, **row_columns(record))
            case AlertRecord():
                columns = row_columns(record, alert_id="id", at="created_at")
                await self._insert_ignore(
                    conn,
                    AlertRow,
                    **columns,
                    status="pending",
                    attempts=0,
                    next_attempt_at=columns["created_at"],
                )

    async def _insert_ignore(self, conn: AsyncConnection, row: type[Any], **values: Any) -> None:
        dialect = sqlite if self.is_sqlite else postgresql
        await conn.execute(dialect.insert(row).values(**values).on_conflict_do_nothing())

    # reading

    async def list_sessions(
        self, *, student: str | None = None, flagged: bool = False, limit: int = 50
    ) -> list[SessionSummary]:
        """Newest first, with counts of turns and flags and the subjects visited."""
        await self.ensure_schema()
        turns = counted(TurnRow, SessionRow.id)
        flags = counted(FlagRow, SessionRow.id)
        query = select(SessionRow, turns.label("turns"), flags.label("flags"))
        if student:
            query = query.where(SessionRow.student == student)
        if flagged:
            query = query.where(flags > 0)
        query = query.order_by(SessionRow.started_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            ids = [row[0] for row in rows]
            subjects = await subjects_visited(conn, ids)
        return [from_row(SessionSummary, row, subjects=subjects.get(row.id, [])) for row in rows]

    async def turns(self, session_id: str) -> list[TurnRow]:
        """The session's turns in the order they were said (none for an unknown session)."""
        await self.ensure_schema()
        async with self.engine.connect() as conn:
            return await _rows(conn, TurnRow, session_id, TurnRow.at, TurnRow.id)

    async def flagged_turns(self, session_id: str) -> set[str]:
        """The item ids of the session's turns that moderation flagged."""
        await self.ensure_schema()
        query = select(FlagRow.turn_item_id).where(
            FlagRow.session_id == session_id, FlagRow.turn_item_id.is_not(None)
        )
        async with self.engine.connect() as conn:
            return {item for item in (await conn.execute(query)).scalars() if item}

    async def export(self, session_id: str) -> dict[str, Any] | None:
        """The whole session as one JSON-ready document, or None if it is unknown."""
        await self.ensure_schema()
        async with self.engine.connect() as conn:
            session = (
                await conn.execute(select(SessionRow).where(SessionRow.id == session_id))
            ).first()
            if session is None:
                return None
            turns = await _rows(conn, TurnRow, session_id, TurnRow.at, TurnRow.id)
            handoffs = await _rows(
                conn, HandoffRow, session_id, HandoffRow.requested_at, HandoffRow.id
            )
            flags = await _rows(conn, FlagRow, session_id, FlagRow.at, FlagRow.id)
            alerts = await _rows(conn, AlertRow, session_id, AlertRow.created_at, AlertRow.id)
        return {
            "format": EXPORT_FORMAT,
            "session": exported(
                session, "id", "student", "room", "started_at", "ended_at", "end_reason"
            ),
            "turns": [
                {
                    "sequence": number,
                    **exported(t, "item_id", "at", "speaker"),
                    "role": "student" if t.speaker == "student" else "tutor",
                    **exported(t, "worker", "text", "synthetic", "interrupted"),
                }
                for number, t in enumerate(turns, 1)
            ],
            "handoffs": [
                exported(
                    h,
                    ("id", "handoff_id"),
                    ("from", "from_tutor"),
                    ("to", "to_tutor"),
                    *("mode", "outcome", "question", "worker", "requested_at", "completed_at"),
                    *("ready_after_s", "silence_gap_s"),
                )
                for h in handoffs
            ],
            "flags": [
                exported(
                    f,
                    ("id", "flag_id"),
                    *("at", "speaker", "tier", "categories", "scores", "action", "text"),
                    "turn_item_id",
                )
                for f in flags
            ],
            "alerts": [
                exported(
                    a,
                    *("id", "flag_id", "channel", "tier", "status", "attempts", "created_at"),
                    *("delivered_at", "last_error"),
                )
                for a in alerts
            ],
        }


async def _set_session(
    conn: AsyncConnection, session_id: str, since_resumed: Any, **values: Any
) -> None:
    """Set `values` on the session, unless a later job resumed it (`since_resumed` is
    false of its resume time)."""
    await conn.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id, or_(SessionRow.resumed_at.is_(None), since_resumed))
        .values(**values)
    )


EXPORT_FORMAT = "voice-tutor.session.v1"


async def subjects_visited(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, list[str]]:
    """Per session, the tutor kinds handed to (not the orchestrator), first visit first."""
    ids = list(ids)
    if not ids:
        return {}
    query = (
        select(HandoffRow.session_id, HandoffRow.to_tutor)
        .where(HandoffRow.session_id.in_(ids), HandoffRow.to_tutor != "orchestrator")
        .order_by(HandoffRow.requested_at)
    )
    found: dict[str, list[str]] = {}
    for session_id, tutor in (await conn.execute(query)).all():
        visited = found.setdefault(session_id, [])
        if tutor not in visited:
            visited.append(tutor)
    return found


async def _rows(conn: AsyncConnection, row: type[Any], session_id: str, *order: Any) -> list[Any]:
    query = select(row).where(row.session_id == session_id).order_by(*order)
    return list((await conn.execute(query)).all())


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as the exports write it."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: the workers write while the CLI (and later the web service) read
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.close()


def upgrade_schema(connection: Connection, revision: str = "head") -> None:
    """Migrate the records tables to `revision` on `connection` (`ensure_schema` does)."""
    from alembic import command
    from alembic.config import Config

    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite alters a table by copying it: with foreign keys on, dropping the old copy
        # would cascade into the tables that refer to it. Both pragmas only work before
        # the transaction, which IMMEDIATE opens with the write lock, so one process
        # migrates while the others wait and then find the schema current.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the records migration left rows without their parent: {broken}")
