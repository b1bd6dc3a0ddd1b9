"""What a worker does with one job: read its dispatch metadata, and take the floor.

Every worker shares this. A job either starts a conversation (the student's token dispatched
the orchestrator) or continues one across workers (a floor handover: the metadata names the
outgoing tutor, the handover id and the tutor to take over, see `agent.handover.protocol`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from livekit.agents import Agent, AgentSession

from agent.conversation.presence import publish_tutor
from agent.conversation.routing import build_tutor
from agent.conversation.session import set_listening
from agent.conversation.state import SessionUserdata, TutorKind
from agent.dispatch.plan import DispatchPlan
from agent.handover.protocol import (
    HandoverRoom,
    declare_ready,
    fetch_transfer,
    floor_release,
    wait_for_floor,
)
from agent.records.resume import Resumption

logger = logging.getLogger("tutor.job")


def apply_plan(userdata: SessionUserdata, plan: DispatchPlan) -> None:
    if plan.session_id:
        userdata.session_id = plan.session_id
    if plan.student:
        userdata.student_identity = plan.student
    # a conversation that continues from another worker has had its greeting
    userdata.greeted = plan.returning or plan.is_handover


async def start_tutor(
    *,
    kind: TutorKind,
    plan: DispatchPlan,
    session: AgentSession[SessionUserdata],
    room: HandoverRoom | None,
    start_session: Callable[[Agent], Awaitable[None]],
    end_job: Callable[[str], Awaitable[None]],
    timeout: float,
    resumption: Resumption | None = None,
) -> bool:
    """Start the `kind` tutor for this job. False if a handover was cancelled (job ended).

    A job that resumes a session starts with the conversation so far (from the records)
    and a welcome back.

    In a floor handover the tutor starts muted with the conversation fetched from the
    outgoing tutor (or only the metadata question, if that fails), reports ready, and
    answers the moment the outgoing tutor says the floor is free (or has left).
    """
    userdata = session.userdata
    outgoing, handover_id = plan.outgoing, plan.handover_id
    if resumption is not None:
        conversation = resumption.to_chat_ctx()
        session.history.insert(conversation.items)
        await start_session(build_tutor(kind, userdata, chat_ctx=conversation, resumed=True))
        return True
    if room is None or outgoing is None or handover_id is None:
        await start_session(build_tutor(kind, userdata, pending_question=plan.question))
        return True

    transfer = await fetch_transfer(
        room, outgoing=outgoing, handover_id=handover_id, timeout=timeout
    )
    conversation = transfer.to_chat_ctx() if transfer else None
    if conversation is not None:
        # the session's history is the conversation so far: what an in-session handoff in
        # this job copies, and what a later crossing transfers on
        session.history.insert(conversation.items)
    floor = asyncio.Event()
    tutor = build_tutor(
        kind,
        userdata,
        chat_ctx=conversation,
        pending_question=plan.question,
        question_in_context=bool(transfer and transfer.has_student_turn),
        floor=floor,
    )
    await start_session(tutor)
    set_listening(session, False)
    with floor_release(room, outgoing=outgoing, handover_id=handover_id) as released:
        if not await declare_ready(
            room, outgoing=outgoing, handover_id=handover_id, timeout=timeout
        ):
            logger.info("handover cancelled by the outgoing tutor", extra=userdata.log_fields())
            await end_job("handover cancelled")
            return False
        await wait_for_floor(room, outgoing=outgoing, timeout=timeout, released=released)
    if plan.student and not room.is_present(plan.student):
        logger.info("the student left before the floor was free", extra=userdata.log_fields())
        await end_job("student left")
        return False
    set_listening(session, True)
    floor.set()
    publish_tutor(userdata.presence, tutor.kind, tutor.title)
    logger.info("took the floor", extra=userdata.log_fields())
    return True
