"""The outgoing side of a handover to a tutor on another worker, wired to a live session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.types import NOT_GIVEN
from livekit.agents.voice import SpeechHandle

from agent.config.roster import ORCHESTRATOR
from agent.conversation.lines import line_cache
from agent.conversation.routing import build_tutor, carried_context, current_kind, outgoing_voice
from agent.conversation.session import set_listening
from agent.conversation.state import HandoffNote, SessionUserdata, TutorKind
from agent.dispatch.client import DispatchClient
from agent.dispatch.plan import DispatchPlan
from agent.handover.protocol import (
    HandoverResult,
    HandoverRoom,
    Outcome,
    Transfer,
    hand_over,
    new_handover_id,
)
from agent.telemetry import metrics
from agent.telemetry.handoffs import handoff_finished

logger = logging.getLogger("tutor.crossing")

OUTCOMES = {
    Outcome.HANDED_OVER: "handed_over",
    Outcome.NOT_READY: "fallback_not_ready",
    Outcome.DISPATCH_FAILED: "fallback_dispatch_failed",
}

STAY_LINE = (
    "I couldn't reach your main tutor just now, so let's keep going together. "
    "What would you like to do?"
)


def stay_line(target: TutorKind, title: str) -> str:
    """What the current tutor says when a tutor it cannot stand in for was not reached."""
    if target == ORCHESTRATOR:
        return STAY_LINE
    return (
        f"I couldn't reach our {title} just now, so let's keep going together. "
        "What would you like to do?"
    )


def say_fixed(session: AgentSession[SessionUserdata], text: str) -> SpeechHandle:
    """Say a fixed line in the current tutor's voice, from the line cache."""
    voice = outgoing_voice(session)
    audio = line_cache().frames(voice, text) if voice is not None else NOT_GIVEN
    return session.say(text, audio=audio)


@dataclass
class Crossing:
    """What a session needs to hand the student to another worker, and its bookkeeping."""

    room: HandoverRoom
    room_name: str
    dispatcher: DispatchClient
    workers: Mapping[TutorKind, str]  # tutors hosted by other workers -> their worker name
    ready_timeout: float
    end_job: Callable[[str], Awaitable[None]]  # close the session and leave the room
    results: list[HandoverResult] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(
        self, session: AgentSession[SessionUserdata], target: TutorKind, question: str
    ) -> None:
        """Announce, stop listening and hand over in the background (the tool returns now)."""
        userdata = session.userdata
        handover_id = new_handover_id()
        note = HandoffNote(
            current_kind(session), target, "cross_worker", question, handoff_id=handover_id
        )
        # the whole conversation (a job started by a handover has the transfer in it too)
        snapshot = Transfer.from_history(handover_id, session.history)
        set_listening(session, False)
        announcement = say_fixed(session, userdata.roster.tutor(target).handoff_line)
        metadata = DispatchPlan(
            session_id=userdata.session_id,
            student=userdata.student_identity,
            question=question,
            handover_id=handover_id,
            outgoing=self.room.local_identity,
            returning=target == ORCHESTRATOR,
            tutor=target,  # which of the worker's tutors takes over
        ).to_metadata()
        task = asyncio.create_task(
            self._complete(session, note, snapshot, metadata, announcement),
            name=f"crossing_to_{target}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def abort(self) -> None:
        """The job ends (the student left): stop any handover in flight and take its
        dispatch back, so no tutor is sent into a room with nobody to teach."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _withdraw(self, target: TutorKind, metadata: str) -> None:
        try:
            async with asyncio.timeout(self.ready_timeout):
                await self.dispatcher.cancel_matching(
                    agent_name=self.workers[target], room=self.room_name, metadata=metadata
                )
        except TimeoutError:
            logger.warning("could not take the dispatch back in time", extra={"target": target})

    async def wait_idle(self) -> None:
        """Wait for every handover in flight (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _complete(
        self,
        session: AgentSession[SessionUserdata],
        note: HandoffNote,
        snapshot: Transfer,
        metadata: str,
        announcement: Awaitable[Any],
    ) -> None:
        userdata = session.userdata
        target, question = note.to_tutor, note.question
        try:
            result = await hand_over(
                self.room,
                handover_id=note.handoff_id,
                transfer=lambda: snapshot,
                dispatch=lambda: self.dispatcher.dispatch(
                    agent_name=self.workers[target],
                    room=self.room_name,
                    metadata=metadata,
                    log_fields=userdata.log_fields(),
                ),
                cancel_dispatch=self.dispatcher.cancel,
                announcement_done=announcement,
                ready_timeout=self.ready_timeout,
            )
        except asyncio.CancelledError:
            # aborted with the job: the dispatch may exist, and must not outlive it
            await asyncio.shield(self._withdraw(target, metadata))
            raise
        self.results.append(result)
        handoff_finished(userdata, note, OUTCOMES[result.outcome], ready_after=result.ready_after)
        fields = {**userdata.log_fields(), "target": target, "outcome": result.outcome.value}
        if result.outcome is Outcome.HANDED_OVER:
            logger.info("handed over across workers", extra=fields)
            await self.end_job(f"handed over to {self.workers[target]}")
            return
        logger.warning("handover failed, falling back", extra=fields)
        metrics.CROSSING_FALLBACKS.labels(target, result.outcome.value).inc()
        set_listening(session, True)
        if target not in userdata.tutor_models:
            # this worker has no models to stand in for that tutor: stay with the student
            say_fixed(session, stay_line(target, userdata.roster.tutor(target).title))
        else:
            session.update_agent(
                build_tutor(
                    target,
                    userdata,
                    chat_ctx=carried_context(session),
                    pending_question=question or None,
                    question_in_context=True,
                )
            )
        if result.dispatch is None:
            # a dispatch call cut short (or failed on our side only) may have created it
            await self.dispatcher.cancel_matching(
                agent_name=self.workers[target], room=self.room_name, metadata=metadata
            )
