"""Wakes the teachers' open pages when a record they show changes.

The database's own triggers (migration 0005) add a row to `live_changes` for every write to
sessions, turns, handoffs, flags, visits and room presence, whoever wrote it (a worker, the
web service, an erasure). One `LiveFeed` per web service reads the new rows in order: on
PostgreSQL as soon as the trigger's `NOTIFY` arrives (and every `fallback_interval` besides,
should the listening connection be lost), on SQLite every `poll_interval` (one indexed query
for rows past the last id seen). It maps their sessions to classes and wakes the pages
watching those classes. A page that connects reads the class's state first, so nothing is
lost across a restart of the web service: the feed only says when to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select

from agent.records.schema import LiveChangeRow, VisitRow
from agent.records.store import RecordsStore, utc_now

logger = logging.getLogger("tutor.live")

NOTIFY_CHANNEL = "tutor_live"  # the triggers' channel (migration 0005)
KEEP_CHANGES = timedelta(minutes=10)
PRUNE_EVERY = 60.0


@dataclass(eq=False)
class Watch:
    """One open page's interest: the classes it shows (None: every class, for a page that
    filters what it shows itself). `changed` is set when one of them changes."""

    classes: frozenset[int] | None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_change(self, timeout: float) -> bool:
        """Until a change (True) or `timeout` seconds (False); ready for the next after."""
        try:
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        except TimeoutError:
            return False
        self.changed.clear()
        return True


class LiveFeed:
    """The change feed of one web service (started and closed by its lifespan)."""

    def __init__(
        self,
        store: RecordsStore,
        *,
        poll_interval: float = 0.25,
        fallback_interval: float = 2.0,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.fallback_interval = fallback_interval
        self.version = 0  # moves on with every batch of changes read
        self._watches: set[Watch] = set()
        self._wake = asyncio.Event()
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None  # the asyncpg connection LISTENing, on PostgreSQL

    async def start(self) -> None:
        await self.store.ensure_schema()
        async with self.store.engine.connect() as conn:
            self._last_id = (await conn.execute(select(func.max(LiveChangeRow.id)))).scalar() or 0
        if not self.store.is_sqlite:
            await self._listen()
        self._task = asyncio.create_task(self._run(), name="live-feed")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    @contextlib.contextmanager
    def watch(self, classes: frozenset[int] | None) -> Iterator[Watch]:
        watch = Watch(classes)
        self._watches.add(watch)
        try:
            yield watch
        finally:
            self._watches.discard(watch)

    @property
    def watching(self) -> int:
        return len(self._watches)

    def touch(self, class_ids: set[int] | None = None) -> None:
        """Wake the pages of `class_ids` (None: every page) now, for a change that is not
        a row (a time that has passed, a message sent)."""
        for watch in self._watches:
            if class_ids is None or watch.classes is None or watch.classes & class_ids:
                watch.changed.set()

    async def _listen(self) -> None:
        import asyncpg

        url = self.store.engine.url.set(drivername="postgresql")
        try:
            conn = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception as exc:  # the fallback interval reads the feed meanwhile
            logger.warning("live feed not listening: %s", type(exc).__name__)
            return
        conn.add_termination_listener(lambda _conn: setattr(self, "_listener", None))
        self._listener = conn

    async def _run(self) -> None:
        interval = self.poll_interval if self.store.is_sqlite else self.fallback_interval
        last_prune = asyncio.get_running_loop().time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._read()
                now = asyncio.get_running_loop().time()
                if now - last_prune > PRUNE_EVERY:
                    last_prune = now
                    await self._prune()
                if not self.store.is_sqlite and self._listener is None:
                    await self._listen()
            except Exception as exc:  # the store is away: the pages keep what they show
                logger.warning("live feed not read: %s", type(exc).__name__)

    async def _read(self) -> None:
        query = (
            select(LiveChangeRow.id, LiveChangeRow.session_id)
            .where(LiveChangeRow.id > self._last_id)
            .order_by(LiveChangeRow.id)
        )
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return
            self._last_id = rows[-1].id
            sessions = {row.session_id for row in rows}
            visits = (
                await conn.execute(
                    select(VisitRow.session_id, VisitRow.class_id).where(
                        VisitRow.session_id.in_(sessions)
                    )
                )
            ).all()
        self.version += 1
        # a session with no visit (gone by an erasure, or begun outside the web service)
        # may be on any page: every page looks again
        found = {visit.session_id for visit in visits}
        self.touch({visit.class_id for visit in visits} if found == sessions else None)

    async def _prune(self) -> None:
        cutoff = utc_now() - KEEP_CHANGES
        async with self.store.engine.begin() as conn:
            await conn.execute(delete(LiveChangeRow).where(LiveChangeRow.at < cutoff))
