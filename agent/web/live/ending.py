"""A teacher ends a student's visit (or a whole class's) from the live page.

The visit ends in the records at once (no resume key opens it again). Then the room hears
it: the server sends `VISIT_ENDED_TOPIC` to everyone in it, which only the server can send
(a participant's own data names its sender). The student's page says the teacher ended the
visit; the tutor with the floor says its goodbye line and leaves, recording the session's
end and closing the room. The web service waits until the server lists no tutor there, and
deletes the room itself then, or after `GOODBYE_TIMEOUT` whatever happened: no room and no
dispatch outlives the visit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

from livekit import api
from livekit.api import LiveKitAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.conversation.presence import VISIT_ENDED_TOPIC
from agent.records.schema import ClassRow, VisitRow
from agent.records.store import RecordsStore, utc_now
from agent.web.live.feed import LiveFeed

logger = logging.getLogger("tutor.live")

GOODBYE_TIMEOUT = 15.0  # the tutor's goodbye line, then its leaving
CALL_TIMEOUT = 5.0  # livekit-api requests have no timeout of their own
RECHECK = 1.0  # asks the server again this often while a tutor is still saying goodbye
BY_TEACHER = "teacher"
CLASS_CLOSED = "class closed"


async def end_visit_by_teacher(
    store: RecordsStore, teacher_id: int, session_id: str, *, now: datetime | None = None
) -> str | None:
    """End the visit `session_id` if it is in one of the teacher's classes and still open;
    its room (None: no such open visit of theirs)."""
    await store.ensure_schema()
    theirs = select(ClassRow.id).where(ClassRow.teacher_id == teacher_id).scalar_subquery()
    open_visit = (
        VisitRow.session_id == session_id,
        VisitRow.class_id.in_(theirs),
        VisitRow.ended_at.is_(None),
    )

    async def work(conn: AsyncConnection) -> str | None:
        room = (await conn.execute(select(VisitRow.room).where(*open_visit))).scalar()
        if room is not None:
            values = {"ended_at": now or utc_now(), "end_reason": BY_TEACHER}
            await conn.execute(update(VisitRow).where(*open_visit).values(**values))
        return room

    return await store.write_waiting(work)


async def close_with_goodbye(lk: LiveKitAPI, feed: LiveFeed, rooms: list[str], *, by: str) -> None:
    """Tell each room its visit has ended (`by` whom), wait for its tutors to leave, then
    delete it (with its dispatches)."""
    message = json.dumps({"by": by}).encode()
    for room in rooms:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await lk.room.send_data(
                    api.SendDataRequest(
                        room=room,
                        data=message,
                        kind=api.DataPacket.Kind.RELIABLE,
                        topic=VISIT_ENDED_TOPIC,
                    )
                )
        except Exception as exc:  # an empty or gone room: nothing to hear it
            logger.info("visit's end not sent: %s", type(exc).__name__, extra={"room": room})
    await _until_tutors_left(lk, feed, rooms, GOODBYE_TIMEOUT)
    for room in rooms:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        except Exception as exc:  # gone already (the tutor closed it), or the server is away
            logger.info("room not deleted: %s", type(exc).__name__, extra={"room": room})


async def _until_tutors_left(
    lk: LiveKitAPI, feed: LiveFeed, rooms: list[str], timeout: float
) -> None:
    """Until the server lists no tutor in `rooms` (or `timeout`). The server's participant
    list is the truth; the feed (the tutor's end of session in the records, the webhooks'
    leaves) says when to ask again, and `RECHECK` bounds the wait without either."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = list(rooms)
    with feed.watch(None) as watch:
        while waiting and (remaining := deadline - loop.time()) > 0:
            waiting = [room for room in waiting if await _tutor_in(lk, room)]
            if waiting:
                await watch.next_change(min(remaining, RECHECK))


async def _tutor_in(lk: LiveKitAPI, room: str) -> bool:
    """Whether the server lists an agent in `room` (not when it cannot say: the room is
    deleted either way)."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    except Exception:  # the room is gone, or the server is away
        return False
    return any(p.kind == api.ParticipantInfo.Kind.AGENT for p in listed.participants)
