"""Who is in a visit's room, from LiveKit's webhooks (`livekit.yaml` `webhook:`): each
event is verified with `livekit.api.WebhookReceiver` (signed with the API key and secret;
a forged, unsigned or altered one is refused and changes nothing), then a join, a leave or
the room's end is written to `room_presence`. Rooms that are no visit of ours are ignored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from livekit.api import TokenVerifier, WebhookReceiver
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent
from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.records.schema import PresenceRow, VisitRow
from agent.records.store import RecordsStore, utc_now

logger = logging.getLogger("tutor.live")

JOINED = "participant_joined"
LEFT = ("participant_left", "participant_connection_aborted")
ROOM_FINISHED = "room_finished"


class WebhookRefused(Exception):
    """A webhook that is not the LiveKit server's own (bad or no signature, altered body)."""


def verified_event(verifier: TokenVerifier, body: bytes, authorization: str) -> WebhookEvent:
    """The event, if the server signed it; else `WebhookRefused`."""
    if not authorization:
        raise WebhookRefused("no signature")
    try:
        return WebhookReceiver(verifier).receive(body.decode(), authorization)
    except Exception as exc:  # the SDK raises plain exceptions for every kind of refusal
        raise WebhookRefused(type(exc).__name__) from exc


def _when(event: WebhookEvent) -> datetime:
    if event.created_at > 0:
        return datetime.fromtimestamp(event.created_at, tz=UTC).replace(tzinfo=None)
    return utc_now()


async def note_event(store: RecordsStore, event: WebhookEvent) -> bool:
    """Write what `event` says about a visit's room; False if it says nothing we keep."""
    if event.event not in (JOINED, *LEFT, ROOM_FINISHED) or not event.room.name:
        return False
    await store.ensure_schema()
    at = _when(event)

    async def work(conn: AsyncConnection) -> bool:
        visit = (
            await conn.execute(
                select(VisitRow.session_id).where(VisitRow.room == event.room.name).limit(1)
            )
        ).scalar()
        if visit is None:
            return False
        here = (PresenceRow.room == event.room.name, PresenceRow.left_at.is_(None))
        if event.event == ROOM_FINISHED:
            await conn.execute(update(PresenceRow).where(*here).values(left_at=at))
            return True
        identity = event.participant.identity
        if not identity:
            return False
        # the server sends webhooks from several workers: a leave may arrive before the
        # join it follows, so each keeps whichever of the two happened last
        joined = event.event == JOINED
        dialect = sqlite if store.is_sqlite else postgresql
        insert = dialect.insert(PresenceRow).values(
            room=event.room.name,
            identity=identity,
            session_id=visit,
            is_tutor=event.participant.kind == ParticipantInfo.Kind.AGENT,
            joined_at=at,
            left_at=None if joined else at,
        )
        if joined:
            later_leave = case((PresenceRow.left_at >= at, PresenceRow.left_at), else_=None)
            changes = {"joined_at": at, "left_at": later_leave}
        else:
            changes = {"left_at": at}
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["room", "identity"],
                set_=changes,
                where=PresenceRow.joined_at <= at,
            )
        )
        return True

    return await store.write_waiting(work)
