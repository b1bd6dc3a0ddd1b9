"""Retention: the records older than the school keeps them are deleted, everywhere, and
the audit log says so."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.records.deletion import audit, delete_sessions
from agent.records.schema import SessionRow, TranscriptViewRow, VisitRow
from agent.records.store import RecordsStore, utc_now

logger = logging.getLogger("tutor.records")


async def purge(store: RecordsStore, *, older_than_days: float, now: datetime | None = None) -> int:
    """Delete the sessions started (or joined) more than `older_than_days` ago, with
    everything recorded under them in every table, and write it to the audit log.
    Returns how many sessions were deleted."""
    await store.ensure_schema()
    now = now or utc_now()
    cutoff = now - timedelta(days=older_than_days)

    async def work(conn: AsyncConnection) -> dict[str, int]:
        old = set(
            (await conn.execute(select(SessionRow.id).where(SessionRow.started_at < cutoff)))
            .scalars()
            .all()
        )
        old.update(
            (await conn.execute(select(VisitRow.session_id).where(VisitRow.created_at < cutoff)))
            .scalars()
            .all()
        )
        deleted = await delete_sessions(conn, sorted(old))
        stale_views = await conn.execute(
            delete(TranscriptViewRow).where(TranscriptViewRow.at < cutoff)
        )
        deleted[TranscriptViewRow.__tablename__] += stale_views.rowcount or 0
        if any(deleted.values()):
            await audit(
                conn,
                at=now,
                actor="retention",
                action="purge",
                target=f"older than {older_than_days:g} days",
                rows=deleted,
            )
        return deleted

    deleted = await store.write_waiting(work)
    logger.info("records purged", extra={"rows": deleted, "days": older_than_days})
    return deleted[SessionRow.__tablename__]
