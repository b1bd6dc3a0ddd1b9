"""The `learning-orchestrator` worker: Orchestrator, Math and History in one session.

Run it with the livekit-agents CLI, which finds the module-level `server`:

    uv run python -m livekit.agents start agent/workers/orchestrator.py
"""

from __future__ import annotations

from livekit.agents import AgentServer, JobContext, JobProcess
from livekit.plugins import silero

from agent.settings import load_settings_or_exit
from agent.workers.models import pipeline_tutor_models, session_stt
from agent.workers.process import (
    job_moderator,
    job_writer,
    prewarm_process,
    schedule_maintenance,
    server_options,
)
from agent.workers.runner import serve_room_job
from agent.workers.turns import turn_handling, vad_options

settings = load_settings_or_exit("learning-orchestrator")
WORKER = settings.orchestrator_agent_name


def prewarm(proc: JobProcess) -> None:
    """Once per job process, before its job: the Silero VAD, the model clients (their TLS
    contexts and connection pools), the records store and the moderation client."""
    proc.userdata["vad"] = silero.VAD.load(**vad_options(settings))
    proc.userdata["tutor_models"] = pipeline_tutor_models(settings)
    # streaming transcription keeps loop-bound state: it is built in the job instead
    proc.userdata["stt"] = None if settings.stt_streaming else session_stt(settings)
    prewarm_process(proc, settings, WORKER)


server = AgentServer(setup_fnc=prewarm, **server_options(settings, WORKER))
schedule_maintenance(server, settings)


@server.rtc_session(agent_name=WORKER)
async def entrypoint(ctx: JobContext) -> None:
    tutor_models = ctx.proc.userdata["tutor_models"]
    await serve_room_job(
        ctx,
        kind="orchestrator",
        settings=settings,
        tutor_models=tutor_models,
        session_models={
            "stt": ctx.proc.userdata["stt"] or session_stt(settings),
            "vad": ctx.proc.userdata["vad"],
            "llm": tutor_models["orchestrator"].llm,
            "tts": tutor_models["orchestrator"].tts,
            "turn_handling": turn_handling(settings),
        },
        workers={"english": settings.english_agent_name},
        worker=WORKER,
        records=job_writer(ctx, settings),
        moderator=job_moderator(ctx),
    )
