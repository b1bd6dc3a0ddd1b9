"""No silent room: when a student's room still has no tutor, dispatch the orchestrator again.

The student's page asks (`POST /api/tutor`) when no tutor has joined within
`WEB_TUTOR_ARRIVAL_TIMEOUT`, then again with backoff. Each ask reads LiveKit's own state:
an agent participant in the room means the tutor is there; a dispatch with a job pending or
running means one is on its way (never a second orchestrator); otherwise a new dispatch
with the same session metadata, at most one per `min_interval` per visit (claimed in the
visits table, so concurrent asks create one), until `max_dispatches`, then a give-up the
page explains, with the dispatches no worker took withdrawn (no tutor arrives later).
Every re-dispatch and give-up is counted and recorded on the visit.

A tutor can also be lost mid-conversation (its worker killed): the server keeps its
participant about 20 s and its job "running" for good, and never dispatches again. The page
notices first (its tutor stops answering `tutor.ping`, or leaves with no tutor after it)
and names the tutors it lost; those that are agents in the student's own room and show no
recent sign of life of their own (`tutor.alive`, renewed twice a second) are removed,
the dispatches whose jobs they held are deleted, and the orchestrator is dispatched at once
with the same session, which it resumes from the records.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from livekit.api import (
    ListParticipantsRequest,
    LiveKitAPI,
    RoomParticipantIdentity,
    TwirpError,
)
from livekit.protocol.models import ParticipantInfo
from prometheus_client import Counter
from sqlalchemy import select, update

from agent.conversation.presence import alive
from agent.dispatch.client import Dispatcher, DispatchError, job_held
from agent.dispatch.plan import DispatchPlan
from agent.records.schema import VisitRow
from agent.records.store import RecordsStore, utc_now

logger = logging.getLogger("tutor.web.watchdog")

REDISPATCHES = Counter(
    "tutor_web_redispatches_total",
    "Orchestrator dispatches made again for a room with no tutor, by outcome "
    "(dispatched, failed, gave_up)",
    ["outcome"],
)


LOST_TUTORS = Counter(
    "tutor_web_lost_tutors_total",
    "Tutors removed from a student's room because they stopped answering the page",
)


class TutorStatus(StrEnum):
    PRESENT = "present"  # a tutor is in the room
    ON_THE_WAY = "on_the_way"  # a job is assigned, or a dispatch was made moments ago
    DISPATCHED = "dispatched"  # this ask made a new dispatch
    GAVE_UP = "gave_up"  # every dispatch allowed was made and none arrived


@dataclass(frozen=True)
class SummonPolicy:
    agent_name: str
    min_interval: timedelta  # between two dispatches of one visit
    max_dispatches: int  # per visit, the first join's own included (rejoins renew none)


@dataclass(frozen=True)
class Visit:
    session_id: str
    identity: str
    room: str
    dispatches: int
    last_dispatch_at: datetime
    gave_up_at: datetime | None


async def find_visit(store: RecordsStore, room: str, identity: str) -> Visit | None:
    await store.ensure_schema()
    query = select(VisitRow).where(VisitRow.room == room, VisitRow.identity == identity)
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Visit(
        row.session_id,
        row.identity,
        row.room,
        row.dispatches,
        row.last_dispatch_at,
        row.gave_up_at,
    )


async def tutor_in_room(lk: LiveKitAPI, room: str, ignoring: Collection[str] = ()) -> bool:
    """An agent in `room`, but those of `ignoring` (just removed: the server may list them
    a moment longer)."""
    answer = await lk.room.list_participants(ListParticipantsRequest(room=room))
    return any(
        p.kind == ParticipantInfo.Kind.AGENT and p.identity not in ignoring
        for p in answer.participants
    )


async def job_waiting(lk: LiveKitAPI, room: str, agent_name: str) -> bool:
    """A dispatch of `agent_name` whose job a worker has taken and not finished."""
    dispatches = await lk.agent_dispatch.list_dispatch(room)
    return any(d.agent_name == agent_name and job_held(d) for d in dispatches)


async def clear_lost_tutors(lk: LiveKitAPI, room: str, lost: Collection[str]) -> list[str]:
    """Clear the tutors of `room` the page lost: each still in the room (a killed worker's
    participant lingers ~20 s) is removed, and the dispatch whose job it held (which the
    server never finishes for a dead worker) is deleted, so neither keeps the next tutor
    away. Only this room's agents and their dispatches are touched: a page can reach
    nothing else, and never a tutor whose own sign of life (`tutor.alive`) is recent: a page
    cannot have a healthy tutor removed. Returns the identities cleared."""
    if not lost:
        return []
    participants = await lk.room.list_participants(ListParticipantsRequest(room=room))
    agents = [p for p in participants.participants if p.kind == ParticipantInfo.Kind.AGENT]
    # the page's word alone removes no tutor that still shows signs of life
    named = set(lost) - {p.identity for p in agents if alive(p.attributes)}
    ghosts = [p.identity for p in agents if p.identity in named]
    cleared = set(ghosts)
    for dispatch in await lk.agent_dispatch.list_dispatch(room):
        holders = {job.state.participant_identity for job in dispatch.state.jobs} & named
        if holders and job_held(dispatch):
            await lk.agent_dispatch.delete_dispatch(dispatch.id, room)
            cleared |= holders
    for identity in ghosts:
        try:
            await lk.room.remove_participant(RoomParticipantIdentity(room=room, identity=identity))
        except TwirpError as exc:
            if exc.status != 404:  # it left meanwhile: what was wanted
                raise
    return sorted(cleared)


async def _claim_dispatch(store: RecordsStore, visit: Visit, now: datetime) -> bool:
    """Take the next dispatch of this visit: True for exactly one of concurrent asks."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(VisitRow)
            .where(
                VisitRow.session_id == visit.session_id,
                VisitRow.dispatches == visit.dispatches,
                VisitRow.gave_up_at.is_(None),
            )
            .values(dispatches=visit.dispatches + 1, last_dispatch_at=now)
        )
    return result.rowcount == 1


async def withdraw_dispatches(lk: LiveKitAPI, room: str, agent_name: str) -> int:
    """Delete `agent_name`'s dispatches in `room` that no worker took: after giving up, a
    worker that starts later must not send a tutor to a student who was told to leave."""
    withdrawn = 0
    for dispatch in await lk.agent_dispatch.list_dispatch(room):
        if dispatch.agent_name == agent_name and not job_held(dispatch):
            await lk.agent_dispatch.delete_dispatch(dispatch.id, room)
            withdrawn += 1
    return withdrawn


async def _give_up(store: RecordsStore, visit: Visit, now: datetime) -> None:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(VisitRow)
            .where(VisitRow.session_id == visit.session_id, VisitRow.gave_up_at.is_(None))
            .values(gave_up_at=now)
        )
    if result.rowcount == 1:
        REDISPATCHES.labels("gave_up").inc()
        logger.warning(
            "no tutor arrived after every dispatch",
            extra={"session": visit.session_id, "room": visit.room, "dispatches": visit.dispatches},
        )


async def summon_tutor(
    lk: LiveKitAPI,
    dispatcher: Dispatcher,
    store: RecordsStore,
    visit: Visit,
    policy: SummonPolicy,
    *,
    lost: Collection[str] = (),
    now: datetime | None = None,
) -> TutorStatus:
    """What the student's page should say, after dispatching again if that is needed.
    `lost`: the tutors the page says stopped answering (see `clear_lost_tutors`)."""
    now = now or utc_now()
    cleared = await clear_lost_tutors(lk, visit.room, lost)
    if cleared:
        LOST_TUTORS.inc(len(cleared))
        logger.warning(
            "a tutor stopped answering: removed, dispatching again",
            extra={"session": visit.session_id, "room": visit.room, "tutors": cleared},
        )
    if await tutor_in_room(lk, visit.room, ignoring=cleared):
        return TutorStatus.PRESENT
    if visit.gave_up_at is not None:
        return TutorStatus.GAVE_UP
    # a lost tutor is replaced at once; an absent one is given its time to arrive
    if not cleared and now - visit.last_dispatch_at < policy.min_interval:
        return TutorStatus.ON_THE_WAY
    if await job_waiting(lk, visit.room, policy.agent_name):
        return TutorStatus.ON_THE_WAY
    if visit.dispatches >= policy.max_dispatches:
        await _give_up(store, visit, now)
        await withdraw_dispatches(lk, visit.room, policy.agent_name)
        return TutorStatus.GAVE_UP
    if not await _claim_dispatch(store, visit, now):
        return TutorStatus.ON_THE_WAY  # a concurrent ask made it
    fields = {"session": visit.session_id, "room": visit.room, "dispatch": visit.dispatches + 1}
    try:
        await dispatcher.dispatch(
            agent_name=policy.agent_name,
            room=visit.room,
            metadata=DispatchPlan(
                session_id=visit.session_id, student=visit.identity
            ).to_metadata(),
            log_fields={"session": visit.session_id},
        )
    except DispatchError:
        REDISPATCHES.labels("failed").inc()
        logger.warning("dispatching the tutor again failed", extra=fields)
        return TutorStatus.ON_THE_WAY  # the claim stands: the next ask tries again later
    REDISPATCHES.labels("dispatched").inc()
    logger.info("tutor dispatched again", extra=fields)
    return TutorStatus.DISPATCHED
