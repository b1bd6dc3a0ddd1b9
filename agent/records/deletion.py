"""Deleting a child's records, table by table, and the audit entry that says it was done:
the one path an erasure, a class's removal and the retention purge all take."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.records.schema import (
    AlertRow,
    AuditRow,
    FlagRow,
    HandoffRow,
    LiveChangeRow,
    PresenceRow,
    SessionRow,
    TranscriptViewRow,
    TurnRow,
    VisitRow,
)

# every table that holds a child's data, with the column naming the session; children
# first: nothing relies on the database cascading
SESSION_KEYED: tuple[tuple[type[Any], Any], ...] = (
    *((row, row.session_id) for row in (AlertRow, FlagRow, HandoffRow, TurnRow)),
    (SessionRow, SessionRow.id),
    (VisitRow, VisitRow.session_id),
    (TranscriptViewRow, TranscriptViewRow.session_id),
    (PresenceRow, PresenceRow.session_id),
    # last: deleting the rows above notes their sessions in the live view's feed
    (LiveChangeRow, LiveChangeRow.session_id),
)


async def delete_sessions(conn: AsyncConnection, session_ids: Sequence[str]) -> dict[str, int]:
    """Delete everything recorded under `session_ids` in every table that holds a child's
    data (the visits and the adults' views of the transcript included); rows per table."""
    ids = list(session_ids)
    deleted: dict[str, int] = {}
    for row, column in SESSION_KEYED:
        result = await conn.execute(delete(row).where(column.in_(ids)))
        deleted[row.__tablename__] = result.rowcount or 0
    return deleted


async def audit(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    rows: dict[str, int],
    reason: str = "",
) -> None:
    """One line of the audit log: who did what to which children's data, how many rows."""
    await conn.execute(
        AuditRow.__table__.insert().values(
            at=at,
            actor=actor[:128],
            action=action,
            target=target[:256],
            reason=reason[:256],
            rows=rows,
        )
    )
