"""One job's life, whatever the worker: one session, one tutor, handovers in and out.

`JobWiring` is everything a job runs with that crosses the process boundary (its models,
the student's room, the dispatch API, records, moderation); a worker builds it from its job
context (`agent.workers.entry.job_wiring`), and `local_job` runs a tutor job in this process
with stand-ins instead (no LiveKit server: a notebook, the evaluation harness, the tests and
the benchmarks). `TutorJob` is the lifecycle: it starts the tutor the dispatch names, and
leaves the room once, when the student leaves, the session closes, or another tutor takes
over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, CloseEvent, CloseReason, JobContext
from livekit.agents.testing import fake_job_context
from livekit.agents.voice.room_io import AudioInputOptions, RoomOptions, TextOutputOptions
from livekit.agents.voice.run_result import RunResult

from agent.config.roster import Roster
from agent.config.settings import Settings
from agent.conversation.presence import (
    PING_METHOD,
    VISIT_ENDED_TOPIC,
    AttributePublisher,
    keep_alive,
)
from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata, TutorKind, TutorModels, new_session_id
from agent.dispatch.client import DispatchClient
from agent.dispatch.plan import DispatchPlan
from agent.framework import skip_close_transcript
from agent.handover.incoming import apply_plan, start_tutor
from agent.handover.outgoing import Crossing
from agent.handover.protocol import HandoverRoom
from agent.records import RecordWriter
from agent.records.recorder import SessionRecorder
from agent.records.resume import Resumption, find_resumption, session_closed
from agent.safety.guard import SafetyGuard
from agent.safety.lines import TEACHER_ENDED_LINE
from agent.safety.moderation import Moderator
from agent.telemetry.metrics import DUPLICATE_JOBS
from agent.turns.patience import Patience, keep_patience

logger = logging.getLogger("tutor.worker")

CLOSE_ROOM_TIMEOUT = 2.0
# a student whose connection was lost is waited for this long before the job ends
STUDENT_RETURN_TIMEOUT = 20.0
# the goodbye line when a teacher ends the visit, at most this long
GOODBYE_TIMEOUT = 10.0


@dataclass
class JobModels:
    """The models of one job."""

    tutors: dict[TutorKind, TutorModels]  # each tutor's own, for the handoffs that build it
    session: Mapping[str, Any] = field(default_factory=dict)  # AgentSession's: stt, vad, ...
    # the student's audio as the session receives it (None: the framework's 24 kHz, which
    # a realtime model needs); a pipeline takes 16 kHz, what its VAD and end-of-turn model
    # run at, so neither resamples every frame
    input_sample_rate: int | None = None
    # a pipeline session's more patient endpointing once the student goes on over the tutor
    patience: Patience | None = None


@dataclass
class JobRoom:
    """The student's room as one job sees it."""

    handover: HandoverRoom  # who is there, floor handovers, the page's pings
    presence: AttributePublisher | None = None  # where the active tutor is published
    # closes the room once the student has left (the server's DeleteRoom): the other tutors
    # and every dispatch go with it
    close: Callable[[], Awaitable[Any]] | None = None
    # whether an earlier dispatch of this worker into the room has a tutor on its way (the
    # server's creation order decides between two jobs starting in the same instant)
    served_by_earlier: Callable[[], Awaitable[bool]] | None = None
    # the connected room the session hears and speaks in (None: the session's audio is the
    # caller's, set in `JobWiring.prepare_session`)
    rtc_room: rtc.Room | None = None


@dataclass
class JobWiring:
    """Everything one job runs with that crosses the process boundary."""

    models: JobModels
    roster: Roster
    worker: str = ""  # this worker's name, as the records show it
    room: JobRoom | None = None  # None: no room (no crossing, no presence)
    dispatcher: DispatchClient | None = None  # None: no crossing to another worker
    workers: Mapping[TutorKind, str] = field(default_factory=dict)  # tutors hosted elsewhere
    records: RecordWriter | None = None  # None: this job records nothing
    moderator: Moderator | None = None  # None: moderation is off
    # called with the session just before it starts: where there is no room, the caller
    # sets its audio input and output here, or listens to it
    prepare_session: Callable[[AgentSession[SessionUserdata]], None] | None = None

    def hosted_here(self) -> list[TutorKind]:
        """The tutors this job can start itself (not those hosted by another worker)."""
        return [kind for kind in self.models.tutors if kind not in self.workers]


async def run_tutor_job(
    ctx: JobContext, *, kind: TutorKind, settings: Settings, wiring: JobWiring
) -> AgentSession[SessionUserdata] | None:
    """Start the tutor the dispatch names (if this worker hosts it), else the `kind` tutor,
    for `ctx`'s job and return its running session; None if another tutor already serves
    the room and this job was a duplicate (it leaves without a word)."""
    return await TutorJob(ctx, settings, wiring).start(kind)


@asynccontextmanager
async def local_job(
    settings: Settings,
    wiring: JobWiring,
    *,
    kind: TutorKind = "orchestrator",
    plan: DispatchPlan | None = None,
    resume: Resumption | None = None,
) -> AsyncIterator[AgentSession[SessionUserdata]]:
    """Run a tutor job in this process, with no LiveKit server: the wiring's models and
    stand-ins (its `prepare_session` gives the session its audio, or none: text only), and
    `plan` as its dispatch (default: a new session); with `resume`, the job continues that
    conversation as if the records held it. The tutor's first reply (its greeting, or its
    welcome back) is over when the session is handed out; it is closed on exit."""
    plan = plan or DispatchPlan(session_id=new_session_id(), student="student")
    with fake_job_context(job_metadata=plan.to_metadata()) as ctx:
        job = TutorJob(ctx, settings, wiring, resume=resume, keep_opening=True)
        session = await job.start(kind)
        if session is None:
            raise RuntimeError("another tutor already serves this job's room")
        try:
            if job.opening is not None:
                await job.opening
            yield session
        finally:
            await session.aclose()


class TutorJob:
    """One job: its session, and how it leaves the room (once, whatever asks first)."""

    def __init__(
        self,
        ctx: JobContext,
        settings: Settings,
        wiring: JobWiring,
        *,
        resume: Resumption | None = None,
        keep_opening: bool = False,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.wiring = wiring
        self.plan = DispatchPlan.from_metadata(ctx.job.metadata)
        self.leaving = False  # set once: the job is on its way out of the room
        self._watcher: asyncio.Task[None] | None = None  # ends the job when the student leaves
        self._heartbeat: asyncio.Task[None] | None = None  # `tutor.alive`, while here
        self.userdata = SessionUserdata(
            room_name=ctx.room.name,
            tutor_models=wiring.models.tutors,
            max_handoffs_without_student_turn=settings.max_handoffs_without_student_turn,
            roster=wiring.roster,
            presence=wiring.room.presence if wiring.room else None,
        )
        self.session: AgentSession[SessionUserdata] | None = None
        self._keep_opening = keep_opening
        self.opening: RunResult[None] | None = None  # the first reply, if kept
        self._resume = resume  # a conversation to continue, given instead of the records'

    async def start(self, kind: TutorKind) -> AgentSession[SessionUserdata] | None:
        """Start the job's tutor (see `run_tutor_job`) and return its running session."""
        wiring, plan, userdata = self.wiring, self.plan, self.userdata
        room = wiring.room
        if not plan.is_handover and (reason := await self._served_already()):
            # a second dispatch for a student already served (e.g. the web service's
            # re-dispatch racing a slow first job): two tutors must never talk at once
            DUPLICATE_JOBS.inc()
            logger.warning(
                "%s: leaving",
                reason,
                extra={"room": self.ctx.room.name, "session": plan.session_id},
            )
            self.ctx.shutdown(reason=reason)
            return None
        # both reads of the records at once: the greeting waits for them
        over, resumption = await asyncio.gather(self._visit_over(), self._resumption())
        if over:
            # a token made before the visit ended (the teacher, the class closed, Leave)
            # or the session was erased brought this job: nothing to continue, and the
            # room goes with it
            logger.warning(
                "the visit has ended: leaving, with the room",
                extra={"room": self.ctx.room.name, "session": plan.session_id},
            )
            if room is not None and room.close is not None:
                await _close_room(room.close)
            self.ctx.shutdown(reason="visit ended")
            return None
        if room is not None:
            room.handover.register_rpc(PING_METHOD, _pong)
            if room.presence is not None:
                self._heartbeat = spawn(keep_alive(room.presence))
        apply_plan(userdata, plan)
        kind = self._tutor(kind)
        if resumption is not None:
            userdata.greeted = True
            kind = resumption.tutor(kind, hosted_here=wiring.hosted_here())
        session = self.session = create_session(userdata, **wiring.models.session)
        if wiring.models.patience is not None:
            keep_patience(session, wiring.models.patience)
        if wiring.records is not None:
            userdata.recorder = SessionRecorder(wiring.records, userdata, worker=wiring.worker)
            userdata.recorder.attach(session, resumed=resumption is not None)
        if wiring.moderator is not None:
            userdata.safety = SafetyGuard(
                wiring.moderator,
                fail_open=self.settings.moderation_fail_mode == "open",
                helpline=self.settings.safeguarding_helpline_text,
            )
            userdata.safety.attach(session)
        session.on("close", self._on_close)
        if room is not None and wiring.dispatcher is not None:
            userdata.crossing = Crossing(
                room=room.handover,
                room_name=self.ctx.room.name,
                dispatcher=wiring.dispatcher,
                workers=wiring.workers,
                ready_timeout=self.settings.handover_ready_timeout,
                end_job=self.hand_on,
            )
        logger.info(
            "job started",
            extra={
                **userdata.log_fields(),
                "job_id": self.ctx.job.id,
                "handover": plan.is_handover,
                "resumed": resumption is not None,
            },
        )
        if room is not None and plan.student:
            self._watcher = spawn(self._until_student_leaves(room.handover, plan.student))
        if room is not None and room.rtc_room is not None:
            room.rtc_room.on("data_received", self._on_data)
        if room is not None:
            # this job's own connection broke (its server node was lost): it cannot know
            # what the student heard since, so it leaves the session to a tutor that
            # resumes it
            room.handover.on_connection_lost(
                lambda: spawn(self.hand_on("lost the connection to the room"))
            )
        await start_tutor(
            kind=kind,
            plan=plan,
            session=session,
            room=room.handover if room else None,
            start_session=self._start_session,
            end_job=self.hand_on,
            timeout=self.settings.handover_ready_timeout,
            resumption=resumption,
        )
        return session

    async def hand_on(self, reason: str) -> None:
        """Leave the room while the student's session goes on (with another tutor)."""
        await self._leave(reason, session_over=False)

    async def finish(self, reason: str, *, student_left: bool = False) -> None:
        """The session is over (the student left, the room or the session closed): leave."""
        await self._leave(reason, session_over=True, student_left=student_left)

    async def _leave(self, reason: str, *, session_over: bool, student_left: bool = False) -> None:
        """Close the session and leave the room, once. After the student, the room goes
        too: no tutor and no dispatch is left in it."""
        if self.leaving:
            return
        self.leaving = True
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        userdata, session = self.userdata, self.session
        assert session is not None
        logger.info("job ending", extra={**userdata.log_fields(), "reason": reason})
        if session_over:
            if userdata.recorder is not None:
                userdata.recorder.end(reason)
            if userdata.crossing is not None:
                await userdata.crossing.abort()
        elif userdata.recorder is not None:
            userdata.recorder.leaving()
        if student_left or not session_over:
            # the student is gone, or their audio stopped at the handover: no last
            # transcript can come, so the close must not wait for one
            skip_close_transcript(session)
        await session.aclose()
        room = self.wiring.room
        if student_left and room is not None and room.close is not None:
            # after this job has left: a deletion that cut a connected tutor would close its
            # data channels mid-stream (the SDK logs that as errors)
            close = room.close

            async def close_after_leaving() -> None:
                await _close_room(close)

            self.ctx.add_shutdown_callback(close_after_leaving)
        self.ctx.shutdown(reason=reason)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        # only the server sends with no participant: a student's own data names them
        if packet.topic == VISIT_ENDED_TOPIC and packet.participant is None and not self.leaving:
            spawn(self.end_by_teacher())

    async def end_by_teacher(self) -> None:
        """The teacher ended the visit (the live page): the goodbye line from the tutor
        with the floor (one that handed the student to another worker is not listening,
        and stays quiet), then leave, and the room goes too."""
        session = self.session
        logger.info("visit ended by the teacher", extra=self.userdata.log_fields())
        holds_floor = session is not None and (
            session.input.audio is None or session.input.audio_enabled
        )
        if session is not None and holds_floor and not self.leaving:
            try:
                await session.interrupt(force=True)
                goodbye = session.say(TEACHER_ENDED_LINE, allow_interruptions=False)
                await asyncio.wait_for(goodbye.wait_for_playout(), GOODBYE_TIMEOUT)
            except Exception as exc:  # not running, or too slow: leaving matters more
                logger.info("goodbye line not finished: %s", type(exc).__name__)
        await self.finish("ended by teacher", student_left=True)

    def _on_close(self, event: CloseEvent) -> None:
        if not self.leaving:
            student_left = event.reason == CloseReason.PARTICIPANT_DISCONNECTED
            spawn(self.finish(f"session closed: {event.reason.value}", student_left=student_left))

    async def _start_session(self, agent: Agent) -> None:
        session, wiring = self.session, self.wiring
        assert session is not None
        if wiring.prepare_session is not None:
            wiring.prepare_session(session)
        rtc_room = wiring.room.rtc_room if wiring.room else None
        if rtc_room is None and self._keep_opening:
            self.opening = await session.start(agent, capture_run=True)
            return
        if rtc_room is None:
            await session.start(agent)
            return
        await session.start(
            agent,
            room=rtc_room,
            room_options=room_options(
                self.plan.student, self.settings, input_sample_rate=wiring.models.input_sample_rate
            ),
            # the framework would otherwise let anyone in the room drive the session over
            # its session topic (read the tutor's instructions, send a turn that was never
            # spoken, mute its captions) and stream every session event to the room
            session_host=False,
        )

    async def _served_already(self) -> str:
        """Why a fresh job must leave without a word, or "" if the student is its own."""
        room = self.wiring.room
        if room is None:
            return ""
        if room.handover.other_tutors():
            return "another tutor already serves this room"
        if room.served_by_earlier is not None and await room.served_by_earlier():
            return "an earlier dispatch's tutor serves this room"
        return ""

    async def _visit_over(self) -> bool:
        """A fresh dispatch (not a handover) for a session whose visit has ended, or which
        was erased."""
        plan, records = self.plan, self.wiring.records
        if plan.is_handover or not plan.session_id or records is None:
            return False
        return await session_closed(records.store, plan.session_id)

    async def _resumption(self) -> Resumption | None:
        """The conversation this job continues: a fresh dispatch (not a handover) naming a
        session that already has turns in the records."""
        plan, records = self.plan, self.wiring.records
        if self._resume is not None:
            return self._resume
        if plan.is_handover or not plan.session_id or records is None:
            return None
        return await find_resumption(records.store, plan.session_id)

    def _tutor(self, default: TutorKind) -> TutorKind:
        """The tutor this job starts: the one its dispatch names, if this worker hosts it."""
        wanted = self.plan.tutor
        if wanted is None or wanted == default:
            return default
        if wanted in self.wiring.hosted_here():
            return wanted
        logger.warning(
            "the dispatch names a tutor this worker does not host; starting its default",
            extra={**self.userdata.log_fields(), "wanted": wanted, "default": default},
        )
        return default

    async def _until_student_leaves(self, room: HandoverRoom, student: str) -> None:
        """End the job once the student, having been in the room, is gone. A student who
        left themselves takes the room with them. One whose connection was lost is waited
        for: back within `STUDENT_RETURN_TIMEOUT`, the same tutor goes on; else the job
        ends and leaves the room for their page to rejoin, where a tutor resumes the
        session."""
        await room.wait_until_present(student)
        while True:
            await room.wait_until_left(student)
            if room.left_on_purpose(student):
                await self.finish("student left", student_left=True)
                return
            try:  # a lost connection often comes back (LiveKit's reconnection, the page's)
                await asyncio.wait_for(room.wait_until_present(student), STUDENT_RETURN_TIMEOUT)
            except TimeoutError:
                await self.finish("student's connection lost")
                return


async def _pong(_caller: str, _payload: str) -> str:
    """The page's "are you there?": answering at all is the answer."""
    return "here"


def room_options(
    student: str, settings: Settings, *, input_sample_rate: int | None = None
) -> RoomOptions:
    """How the session uses the room: it listens to the student only (never to another
    tutor sharing the room), at `input_sample_rate` if given (the SDK decodes the student's
    audio to that rate once), and sends captions in step with the voice, or as soon as the
    text is ready (`CAPTIONS_SYNCED=false`: no speaking-rate analysis of every reply). Typed
    chat is not taken: a student's turn is what they say (and is moderated as such); text
    sent to the room would otherwise become a turn beside the voice loop. The student's
    audio arrives in frames of `AUDIO_INPUT_FRAME_MS`."""
    rate = {"sample_rate": input_sample_rate} if input_sample_rate else {}
    audio_input = AudioInputOptions(**rate, frame_size_ms=settings.audio_input_frame_ms)
    return RoomOptions(
        participant_identity=student or NOT_GIVEN,
        audio_input=audio_input,
        # the student speaks: typed chat (the framework's default input) is not a turn
        text_input=False,
        text_output=TextOutputOptions(sync_transcription=settings.captions_synced),
    )


_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `coro` in the background, keeping a reference until it is done."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _close_room(close_room: Callable[[], Awaitable[Any]]) -> None:
    """Delete the student's room (every dispatch goes with it), within a bound."""
    try:
        await asyncio.wait_for(close_room(), CLOSE_ROOM_TIMEOUT)
    except Exception as exc:  # the server closes an empty room itself, later
        logger.warning("closing the empty room failed: %s", type(exc).__name__)
