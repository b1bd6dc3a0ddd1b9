"""The job body every worker shares: one session, one tutor, handovers in and out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import NOT_GIVEN, Agent, AgentSession, CloseEvent, CloseReason, JobContext
from livekit.agents.voice.room_io import AudioInputOptions, RoomOptions, TextOutputOptions

from agent.config.roster import Roster, default_roster
from agent.config.settings import Settings
from agent.conversation.presence import PING_METHOD, AttributePublisher, RoomAttributes
from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata, TutorKind, TutorModels
from agent.dispatch.client import DispatchClient
from agent.dispatch.plan import DispatchPlan
from agent.framework import skip_close_transcript
from agent.handover.incoming import apply_plan, start_tutor
from agent.handover.outgoing import Crossing
from agent.handover.protocol import HandoverRoom
from agent.handover.room import LiveKitHandoverRoom
from agent.records import RecordWriter
from agent.records.recorder import SessionRecorder
from agent.records.resume import Resumption, find_resumption
from agent.safety.guard import SafetyGuard
from agent.safety.moderation import Moderator
from agent.telemetry.metrics import DUPLICATE_JOBS
from agent.workers.models import dispatcher_for

logger = logging.getLogger("tutor.worker")


@dataclass
class JobDeps:
    """Everything a job uses that crosses the process boundary (models, room, API)."""

    tutor_models: dict[TutorKind, TutorModels]
    session_models: Mapping[str, Any]  # passed to AgentSession: stt, vad, tts, llm
    dispatcher: DispatchClient
    handover_room: HandoverRoom | None
    workers: Mapping[TutorKind, str]  # tutors hosted elsewhere -> worker (agent) name
    start_options: Mapping[str, Any] = field(default_factory=dict)  # for session.start
    records: RecordWriter | None = None  # None: this job records nothing
    # called with the session just before it starts, where there is no room: tests and
    # benchmarks set its audio input and output or listen to it (in a worker, the room does)
    prepare_session: Callable[[AgentSession[SessionUserdata]], None] | None = None
    worker: str = ""  # this worker's name, as the records show it
    moderator: Moderator | None = None  # None: moderation is off
    roster: Roster | None = None  # None: the default roster
    presence: AttributePublisher | None = None  # where the active tutor is published
    # the student's audio as the session receives it (None: the framework's 24 kHz, which
    # a realtime model needs); a pipeline takes 16 kHz, what its VAD and end-of-turn model
    # run at, so neither resamples every frame
    input_sample_rate: int | None = None
    # closes the student's room once the student has left (the server's DeleteRoom): the
    # other tutors and every dispatch go with it; None where there is no server
    close_room: Callable[[], Awaitable[Any]] | None = None
    # whether an earlier dispatch of this worker into the room has a tutor on its way (the
    # server's creation order decides between two jobs starting in the same instant)
    served_by_earlier: Callable[[], Awaitable[bool]] | None = None


CLOSE_ROOM_TIMEOUT = 2.0
# a student whose connection was lost is waited for this long before the job ends
STUDENT_RETURN_TIMEOUT = 20.0


async def _served_already(deps: JobDeps) -> str:
    """Why a fresh job must leave without a word, or "" if the student is its own."""
    room = deps.handover_room
    if room is not None and room.other_tutors():
        return "another tutor already serves this room"
    if deps.served_by_earlier is not None and await deps.served_by_earlier():
        return "an earlier dispatch's tutor serves this room"
    return ""


async def run_tutor_job(
    ctx: JobContext, *, kind: TutorKind, settings: Settings, deps: JobDeps
) -> AgentSession[SessionUserdata] | None:
    """Start the tutor the dispatch names (if this worker hosts it), else the `kind` tutor,
    for `ctx`'s job and return its running session; None if another tutor already serves
    the room and this job was a duplicate (it leaves without a word)."""
    plan = DispatchPlan.from_metadata(ctx.job.metadata)
    if not plan.is_handover and (reason := await _served_already(deps)):
        # a second dispatch for a student already served (e.g. the web service's
        # re-dispatch racing a slow first job): two tutors must never talk at once
        DUPLICATE_JOBS.inc()
        logger.warning(
            "%s: leaving", reason, extra={"room": ctx.room.name, "session": plan.session_id}
        )
        ctx.shutdown(reason=reason)
        return None
    if deps.handover_room is not None:
        deps.handover_room.register_rpc(PING_METHOD, _pong)
    resumption = await _resumption(plan, deps)
    userdata = SessionUserdata(
        room_name=ctx.room.name,
        tutor_models=deps.tutor_models,
        max_handoffs_without_student_turn=settings.max_handoffs_without_student_turn,
        roster=deps.roster or default_roster(),
        presence=deps.presence,
    )
    apply_plan(userdata, plan)
    kind = job_tutor(plan, kind, deps, userdata)
    if resumption is not None:
        userdata.greeted = True
        kind = resumption.tutor(kind, hosted_here=_hosted_here(deps))
    session = create_session(userdata, **deps.session_models)
    if deps.records is not None:
        userdata.recorder = SessionRecorder(deps.records, userdata, worker=deps.worker)
        userdata.recorder.attach(session, resumed=resumption is not None)
    if deps.moderator is not None:
        userdata.safety = SafetyGuard(
            deps.moderator,
            fail_open=settings.moderation_fail_mode == "open",
            helpline=settings.safeguarding_helpline_text,
        )
        userdata.safety.attach(session)
    start_options = dict(deps.start_options)
    if "room" in start_options:
        start_options["room_options"] = room_options(
            plan.student, settings, input_sample_rate=deps.input_sample_rate
        )
        # the framework would otherwise let anyone in the room drive the session over its
        # session topic (read the tutor's instructions, send a turn that was never spoken,
        # mute its captions) and stream every session event to the room
        start_options["session_host"] = False

    leaving = False  # set once: this job is on its way out of the room
    watcher: asyncio.Task[None] | None = None  # ends the job when the student leaves

    def stop_watching() -> None:
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()

    async def leave(reason: str, *, session_over: bool, student_left: bool = False) -> None:
        """Close the session and leave the room, once. After the student, the room goes
        too: no tutor and no dispatch is left in it."""
        nonlocal leaving
        if leaving:
            return
        leaving = True
        stop_watching()
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
        if student_left and deps.close_room is not None:
            # after this job has left: a deletion that cut a connected tutor would close its
            # data channels mid-stream (the SDK logs that as errors)
            close_room = deps.close_room

            async def close_after_leaving() -> None:
                await _close_room(close_room)

            ctx.add_shutdown_callback(close_after_leaving)
        ctx.shutdown(reason=reason)

    async def end_job(reason: str) -> None:
        """Leave the room while the student's session goes on (with another tutor)."""
        await leave(reason, session_over=False)

    async def finish_job(reason: str, *, student_left: bool = False) -> None:
        """The session is over (the student left, the room or the session closed): leave."""
        await leave(reason, session_over=True, student_left=student_left)

    def on_close(event: CloseEvent) -> None:
        if not leaving:
            student_left = event.reason == CloseReason.PARTICIPANT_DISCONNECTED
            spawn(finish_job(f"session closed: {event.reason.value}", student_left=student_left))

    session.on("close", on_close)

    async def start_session(agent: Agent) -> None:
        if deps.prepare_session is not None:
            deps.prepare_session(session)
        await session.start(agent, **start_options)

    if deps.handover_room is not None:
        userdata.crossing = Crossing(
            room=deps.handover_room,
            room_name=ctx.room.name,
            dispatcher=deps.dispatcher,
            workers=deps.workers,
            ready_timeout=settings.handover_ready_timeout,
            end_job=end_job,
        )
    logger.info(
        "job started",
        extra={
            **userdata.log_fields(),
            "job_id": ctx.job.id,
            "handover": plan.is_handover,
            "resumed": resumption is not None,
        },
    )
    if deps.handover_room is not None and plan.student:
        watcher = spawn(_until_student_leaves(deps.handover_room, plan.student, finish_job))
    if deps.handover_room is not None:
        # this job's own connection broke (its server node was lost): it cannot know what
        # the student heard since, so it leaves the session to a tutor that resumes it
        deps.handover_room.on_connection_lost(
            lambda: spawn(end_job("lost the connection to the room"))
        )
    await start_tutor(
        kind=kind,
        plan=plan,
        session=session,
        room=deps.handover_room,
        start_session=start_session,
        end_job=end_job,
        timeout=settings.handover_ready_timeout,
        resumption=resumption,
    )
    return session


async def _pong(_caller: str, _payload: str) -> str:
    """The page's "are you there?": answering at all is the answer."""
    return "here"


async def _resumption(plan: DispatchPlan, deps: JobDeps) -> Resumption | None:
    """The conversation this job continues: a fresh dispatch (not a handover) naming a
    session that already has turns in the records."""
    if plan.is_handover or not plan.session_id or deps.records is None:
        return None
    return await find_resumption(deps.records.store, plan.session_id)


def _hosted_here(deps: JobDeps) -> list[TutorKind]:
    """The tutors this job can start itself (not those hosted by another worker)."""
    return [kind for kind in deps.tutor_models if kind not in deps.workers]


def room_options(
    student: str, settings: Settings, *, input_sample_rate: int | None = None
) -> RoomOptions:
    """How the session uses the room: it listens to the student only (never to another
    tutor sharing the room), at `input_sample_rate` if given (the SDK decodes the student's
    audio to that rate once), and sends captions in step with the voice, or as soon as the
    text is ready (`CAPTIONS_SYNCED=false`: no speaking-rate analysis of every reply). Typed
    chat is not taken: a student's turn is what they say (and is moderated as such); text
    sent to the room would otherwise become a turn beside the voice loop."""
    audio_input = (
        AudioInputOptions(sample_rate=input_sample_rate) if input_sample_rate else NOT_GIVEN
    )
    return RoomOptions(
        participant_identity=student or NOT_GIVEN,
        audio_input=audio_input,
        # the student speaks: typed chat (the framework's default input) is not a turn
        text_input=False,
        text_output=TextOutputOptions(sync_transcription=settings.captions_synced),
    )


def job_tutor(
    plan: DispatchPlan, default: TutorKind, deps: JobDeps, userdata: SessionUserdata
) -> TutorKind:
    """The tutor this job starts: the one its dispatch names, if this worker hosts it."""
    wanted = plan.tutor
    if wanted is None or wanted == default:
        return default
    if wanted in _hosted_here(deps):
        return wanted
    logger.warning(
        "the dispatch names a tutor this worker does not host; starting its default",
        extra={**userdata.log_fields(), "wanted": wanted, "default": default},
    )
    return default


_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `coro` in the background, keeping a reference until it is done."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _until_student_leaves(
    room: HandoverRoom, student: str, finish_job: Callable[..., Awaitable[None]]
) -> None:
    """End the job once the student, having been in the room, is gone. A student who left
    themselves takes the room with them. One whose connection was lost is waited for: back
    within `STUDENT_RETURN_TIMEOUT`, the same tutor goes on; else the job ends and leaves
    the room for their page to rejoin, where a tutor resumes the session."""
    await room.wait_until_present(student)
    while True:
        await room.wait_until_left(student)
        if room.left_on_purpose(student):
            await finish_job("student left", student_left=True)
            return
        try:  # a lost connection often comes back (LiveKit's reconnection, the page's)
            await asyncio.wait_for(room.wait_until_present(student), STUDENT_RETURN_TIMEOUT)
        except TimeoutError:
            await finish_job("student's connection lost")
            return


async def _close_room(close_room: Callable[[], Awaitable[Any]]) -> None:
    """Delete the student's room (every dispatch goes with it), within a bound."""
    try:
        await asyncio.wait_for(close_room(), CLOSE_ROOM_TIMEOUT)
    except Exception as exc:  # the server closes an empty room itself, later
        logger.warning("closing the empty room failed: %s", type(exc).__name__)


async def serve_room_job(
    ctx: JobContext,
    *,
    kind: TutorKind,
    settings: Settings,
    tutor_models: dict[TutorKind, TutorModels],
    session_models: Mapping[str, Any],
    workers: Mapping[TutorKind, str],
    worker: str,
    records: RecordWriter | None = None,
    moderator: Moderator | None = None,
    roster: Roster | None = None,
    input_sample_rate: int | None = None,
) -> None:
    """A worker's entrypoint body: connect, one dispatch client per job, and run the tutor."""
    await ctx.connect()
    dispatcher = dispatcher_for(settings)
    ctx.add_shutdown_callback(dispatcher.aclose)
    deps = JobDeps(
        tutor_models=tutor_models,
        session_models=session_models,
        dispatcher=dispatcher,
        handover_room=LiveKitHandoverRoom(ctx.room),
        workers=workers,
        start_options={"room": ctx.room},
        records=records,
        worker=worker,
        moderator=moderator,
        roster=roster,
        presence=RoomAttributes(ctx.room),
        input_sample_rate=input_sample_rate,
        close_room=ctx.delete_room,
        served_by_earlier=lambda: dispatcher.served_by_earlier(
            room=ctx.room.name, dispatch_id=ctx.job.dispatch_id, agent_name=ctx.job.agent_name
        ),
    )
    await run_tutor_job(ctx, kind=kind, settings=settings, deps=deps)
