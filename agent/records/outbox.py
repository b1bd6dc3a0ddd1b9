"""The alerts outbox in the records store: alerts due, one deliverer's claim on one, and
each attempt's outcome (delivered by `agent.safety.alerts`; written with the flag that
raised it, so no alert is lost when a job ends or a receiver is down)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from agent.records.schema import AlertRow
from agent.records.store import RecordsStore


async def due_alerts(store: RecordsStore, now: datetime, limit: int = 50) -> list[AlertRow]:
    """Pending alerts whose next attempt is due, oldest first."""
    await store.ensure_schema()
    query = (
        select(AlertRow)
        .where(AlertRow.status == "pending", AlertRow.next_attempt_at <= now)
        .order_by(AlertRow.created_at)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())  # type: ignore[arg-type]


async def claim_alert(
    store: RecordsStore, alert_id: str, *, now: datetime, lease: timedelta
) -> bool:
    """Take `alert_id` for one delivery attempt: True for exactly one of several
    deliverers (the lease moves its next attempt past theirs)."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(AlertRow)
            .where(
                AlertRow.id == alert_id,
                AlertRow.status == "pending",
                AlertRow.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease, attempts=AlertRow.attempts + 1)
        )
    return result.rowcount == 1


async def settle_alert(
    store: RecordsStore,
    alert_id: str,
    *,
    status: str,
    now: datetime,
    next_attempt_at: datetime | None = None,
    error: str | None = None,
) -> None:
    """Record an attempt's outcome: delivered, retry at `next_attempt_at`, or given up."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == "delivered":
        values["delivered_at"] = now
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    async with store.engine.begin() as conn:
        await conn.execute(update(AlertRow).where(AlertRow.id == alert_id).values(**values))
