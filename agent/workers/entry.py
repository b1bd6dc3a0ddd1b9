"""What a named worker of the roster is, builds once per process and does for each job.

A worker module (`named.py`, and `orchestrator.py` / `english.py` for the shipped roster's
two) says which worker it is (`worker_plan`) and exposes the plan's `prewarm` and `serve`
and the `AgentServer` they run on (`plan_server`). The framework pickles both into its job
processes: they are methods of the plan, which travels with them (settings and roster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentServer, JobContext, JobProcess

from agent.config.roster import Roster, load_roster_or_exit
from agent.config.settings import Settings, load_settings_or_exit
from agent.conversation.presence import RoomAttributes
from agent.conversation.state import TutorKind
from agent.dispatch.client import Dispatcher
from agent.handover.room import LiveKitHandoverRoom
from agent.turns.options import load_vad, realtime_turns, turn_handling
from agent.turns.patience import patience_for
from agent.workers.job import JobModels, JobRoom, JobWiring, run_tutor_job
from agent.workers.models import (
    dispatcher_for,
    pipeline_tutor_models,
    realtime_tutor_models,
    session_stt,
)
from agent.workers.resources import (
    ProcessResources,
    job_moderator,
    job_writer,
    prewarm_process,
    resources_of,
)
from agent.workers.server import worker_server
from agent.workers.warmup import warm_http_clients, warm_realtime_types


@dataclass(frozen=True)
class WorkerPlan:
    """One named worker of the roster, with the settings it runs with."""

    settings: Settings
    roster: Roster
    name: str

    @property
    def pipeline(self) -> bool:
        return self.roster.mode_of(self.name) == "pipeline"

    @property
    def ends_turns(self) -> bool:
        """Whether this worker's sessions end the student's turns themselves (with the VAD and
        endpointing), rather than a realtime model's own turn detection."""
        return self.pipeline or self.settings.realtime_turn_detection == "local"

    @property
    def default_tutor(self) -> TutorKind:
        return self.roster.default_tutor(self.name)

    def prewarm(self, proc: JobProcess) -> None:
        prewarm_worker(proc, self)

    async def serve(self, ctx: JobContext) -> None:
        await serve_worker_job(ctx, self)


def worker_plan(label: str, which: Callable[[Settings, Roster], str]) -> WorkerPlan:
    """The settings, the roster and the plan of the worker `which` names in them, or one
    clear line (starting with `label`) and a non-zero exit."""
    settings = load_settings_or_exit(label)
    roster = load_roster_or_exit(settings, label)
    return worker_plan_or_exit(settings, roster, which(settings, roster))


def plan_server(
    plan: WorkerPlan,
    prewarm: Callable[[JobProcess], None],
    entrypoint: Callable[[JobContext], Awaitable[None]],
) -> AgentServer:
    """The worker's `AgentServer`, running `prewarm` in each job process and `entrypoint`
    for each job dispatched to the plan's name."""
    server = worker_server(prewarm, plan.settings, plan.name)
    server.rtc_session(agent_name=plan.name)(entrypoint)
    return server


def worker_plan_or_exit(settings: Settings, roster: Roster, name: str) -> WorkerPlan:
    """The plan of worker `name`, or one clear line and a non-zero exit."""
    if name not in roster.workers:
        known = ", ".join(roster.workers)
        raise SystemExit(
            f"{name}: not a worker of the tutor roster {roster.source} (its workers: {known})"
        )
    return WorkerPlan(settings, roster, name)


def prewarm_worker(proc: JobProcess, plan: WorkerPlan) -> None:
    """Once per job process, before its job: the model clients (their TLS contexts and
    connection pools), the VAD (on a realtime worker only if it ends turns itself), on a
    pipeline worker the STT, then the records
    store, the moderation client and the trace exporter; and what a job's first moments
    would otherwise do on its loop (`agent.workers.warmup`)."""
    settings, roster = plan.settings, plan.roster
    resources = resources_of(proc)
    if plan.ends_turns:
        resources.vad = load_vad(settings)
    if plan.pipeline:
        # every tutor: its own, and a realtime worker's tutor for when it cannot be reached
        resources.tutor_models = pipeline_tutor_models(settings, roster)
        # streaming transcription keeps loop-bound state: it is built in the job instead
        resources.stt = None if settings.stt_streaming else session_stt(settings)
    else:
        resources.tutor_models = {
            kind: realtime_tutor_models(settings, roster, kind)
            for kind in roster.hosted_on(plan.name)
        }
        warm_realtime_types()
    warm_http_clients()
    prewarm_process(proc, settings, plan.name)


def session_models(resources: ProcessResources, plan: WorkerPlan) -> dict[str, Any]:
    """What a job's `AgentSession` is built with, from what its process prewarmed: on a
    pipeline worker the STT, VAD and turn handling, and the default tutor's LLM and TTS;
    on a realtime worker the TTS of its fixed lines and, unless the model ends turns, the
    VAD and turn handling."""
    own = resources.tutor_models[plan.default_tutor]
    if not plan.pipeline:
        return {"tts": own.tts, **realtime_turns(plan.settings, resources.vad)}
    return {
        "stt": resources.stt or session_stt(plan.settings),
        "vad": resources.vad,  # None opts out: left out, the framework loads a VAD of its own
        "llm": own.llm,
        "tts": own.tts,
        "turn_handling": turn_handling(plan.settings),
    }


def job_models(resources: ProcessResources, plan: WorkerPlan) -> JobModels:
    """The models of one of this worker's jobs, from what its process prewarmed."""
    return JobModels(
        tutors=resources.tutor_models,
        session=session_models(resources, plan),
        # a realtime model takes the framework's 24 kHz; a pipeline the setting's rate
        input_sample_rate=plan.settings.audio_input_sample_rate if plan.pipeline else None,
        patience=patience_for(plan.settings) if plan.ends_turns else None,  # one per job
    )


def job_wiring(ctx: JobContext, plan: WorkerPlan, dispatcher: Dispatcher) -> JobWiring:
    """How one of this worker's jobs is wired, from its (connected) job context: the
    process's models, records and moderation, the student's room, and `dispatcher` to reach
    every tutor hosted elsewhere."""
    return JobWiring(
        models=job_models(resources_of(ctx.proc), plan),
        roster=plan.roster,
        worker=plan.name,
        room=JobRoom(
            handover=LiveKitHandoverRoom(ctx.room),
            presence=RoomAttributes(ctx.room),
            close=ctx.delete_room,
            served_by_earlier=lambda: dispatcher.served_by_earlier(
                room=ctx.room.name, dispatch_id=ctx.job.dispatch_id, agent_name=ctx.job.agent_name
            ),
            rtc_room=ctx.room,
        ),
        dispatcher=dispatcher,
        workers=plan.roster.elsewhere(plan.name),
        records=job_writer(ctx, plan.settings),
        moderator=job_moderator(ctx),
    )


async def serve_worker_job(ctx: JobContext, plan: WorkerPlan) -> None:
    """A job of this worker: connect, one dispatch client for the job, and the tutor its
    dispatch names (else the worker's default tutor), with every tutor hosted elsewhere
    reachable across workers."""
    await ctx.connect()
    dispatcher = dispatcher_for(plan.settings)
    ctx.add_shutdown_callback(dispatcher.aclose)
    await run_tutor_job(
        ctx,
        kind=plan.default_tutor,
        settings=plan.settings,
        wiring=job_wiring(ctx, plan, dispatcher),
    )
