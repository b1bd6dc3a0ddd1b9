"""Flags and alerts: recorded first (the outbox in the records store), delivered after.

Every flag is recorded with its alerts: *concern* goes to the teacher channel, *urgent* to
the teacher and the safeguarding channels. A job only writes them (through its record
writer); each worker's main process runs `deliver_forever`, which takes due alerts from the
store, POSTs each to its channel's webhook (JSON, signed with HMAC-SHA256 of the body under
`ALERT_WEBHOOK_SECRET`, the alert id as idempotency key) and retries with backoff until the
receiver accepts it, for `ALERT_RETRY_HOURS`. So an alert outlives the job that raised it
and a receiver's outage; a retry always carries the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from agent.config.settings import SafetySettings
from agent.records.models import AlertRecord, FlagRecord, Record
from agent.records.outbox import claim_alert, due_alerts, settle_alert
from agent.records.store import RecordsStore, utc_now
from agent.safety.moderation import Tier, Verdict
from agent.telemetry import metrics

logger = logging.getLogger("tutor.alerts")

SIGNATURE_HEADER = "X-Tutor-Signature"
ALERT_ID_HEADER = "X-Tutor-Alert-Id"
CHANNELS: dict[Tier, tuple[str, ...]] = {
    "concern": ("teacher",),
    "urgent": ("teacher", "safeguarding"),
}
RECENT_TURNS = 6
LEASE = timedelta(seconds=60)
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0
POST_TIMEOUT = 10.0


@dataclass(frozen=True)
class DeliveryConfig:
    webhooks: Mapping[str, str]  # channel -> URL ("" or absent: not routed)
    secret: str
    retry_for: timedelta = timedelta(hours=48)


def delivery_config(settings: SafetySettings) -> DeliveryConfig:
    """Where each channel's alerts go, and the signing key, from the settings."""
    secret = settings.alert_webhook_secret
    return DeliveryConfig(
        webhooks={
            "teacher": settings.teacher_webhook_url,
            "safeguarding": settings.safeguarding_webhook_url,
        },
        secret=secret.get_secret_value() if secret else "",
        retry_for=timedelta(hours=settings.alert_retry_hours),
    )


def flag_and_alerts(
    *,
    session_id: str,
    student: str,
    speaker: str,
    text: str,
    verdict: Verdict,
    action: str,
    recent: Sequence[tuple[str, str]],
    turn_item_id: str | None = None,
) -> list[Record]:
    """The flag of a flagged turn and one alert per channel its tier goes to."""
    assert verdict.tier is not None
    flag = FlagRecord(
        session_id=session_id,
        flag_id=uuid.uuid4().hex,
        speaker=speaker,
        tier=verdict.tier,
        categories=verdict.categories,
        scores=verdict.scores,
        action=action,
        text=text,
        turn_item_id=turn_item_id,
    )
    records: list[Record] = [flag]
    for channel in CHANNELS[verdict.tier]:
        alert_id = uuid.uuid4().hex
        payload = {
            "alert_id": alert_id,
            "session_id": session_id,
            "student": student,
            "channel": channel,
            "tier": verdict.tier,
            "categories": verdict.categories,
            "scores": {
                k: round(v, 4) for k, v in verdict.scores.items() if k in verdict.categories
            },
            "speaker": speaker,
            "flagged_text": text,
            "action": action,
            "recent_turns": [
                {"speaker": who, "text": said} for who, said in recent[-RECENT_TURNS:]
            ],
            "created_at": datetime.fromtimestamp(flag.at, UTC).isoformat(timespec="seconds"),
        }
        records.append(
            AlertRecord(alert_id, session_id, flag.flag_id, channel, verdict.tier, payload)
        )
    return records


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str, secret: str) -> bool:
    """For receivers: does `signature` (the header's value) sign exactly `body`?"""
    return hmac.compare_digest(sign(body, secret), signature)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1)))


async def deliver_due(
    store: RecordsStore,
    config: DeliveryConfig,
    *,
    http: aiohttp.ClientSession,
    now: datetime | None = None,
) -> dict[str, int]:
    """One pass over the outbox: try every due alert once. Returns counts by outcome."""
    now = now or utc_now()
    counts: dict[str, int] = {}
    for alert in await due_alerts(store, now):
        if not await claim_alert(store, alert.id, now=now, lease=LEASE):
            continue  # another deliverer has it
        outcome = await _attempt(store, config, http, alert, now)
        counts[outcome] = counts.get(outcome, 0) + 1
        metrics.ALERTS.labels(alert.channel, outcome).inc()
    return counts


async def _attempt(
    store: RecordsStore,
    config: DeliveryConfig,
    http: aiohttp.ClientSession,
    alert: Any,
    now: datetime,
) -> str:
    fields = {"alert_id": alert.id, "session_id": alert.session_id, "channel": alert.channel}
    url = config.webhooks.get(alert.channel, "")
    if not url:
        logger.warning("no webhook for the %s channel: alert kept in the records", alert.channel,
                       extra=fields)  # fmt: skip
        await settle_alert(store, alert.id, status="unrouted", now=now)
        return "unrouted"
    body = json.dumps(alert.payload, ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        ALERT_ID_HEADER: alert.id,
        SIGNATURE_HEADER: sign(body, config.secret),
    }
    try:
        async with (
            asyncio.timeout(POST_TIMEOUT),
            http.post(url, data=body, headers=headers) as response,
        ):
            status = response.status
        error = None if 200 <= status < 300 else f"HTTP {status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        error = type(exc).__name__
    if error is None:
        logger.info("alert delivered", extra={**fields, "attempts": alert.attempts + 1})
        await settle_alert(store, alert.id, status="delivered", now=now)
        return "delivered"
    if now - alert.created_at >= config.retry_for:
        logger.error("alert given up after %s: %s", config.retry_for, error, extra=fields)
        await settle_alert(store, alert.id, status="failed", now=now, error=error)
        return "failed"
    retry_at = now + _backoff(alert.attempts + 1)
    logger.warning("alert delivery failed (%s), retrying at %s", error, retry_at, extra=fields)
    await settle_alert(
        store, alert.id, status="pending", now=now, next_attempt_at=retry_at, error=error
    )
    return "retry"


async def deliver_forever(store: RecordsStore, config: DeliveryConfig, interval: float) -> None:
    """The worker main process's delivery loop: a pass every `interval` seconds."""
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                await deliver_due(store, config, http=http)
            except Exception as exc:
                logger.warning("alert delivery pass failed: %s", type(exc).__name__)
            await asyncio.sleep(interval)  # a schedule, not a coordination
