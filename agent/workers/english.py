"""The `learning-english` worker: the English tutor on a speech-to-speech realtime model.

It is brought into a student's room by an explicit dispatch from the orchestrator, and
hands the student back the same way. Run it with:

    uv run python -m livekit.agents start agent/workers/english.py
"""

from __future__ import annotations

from livekit.agents import AgentServer, JobContext, JobProcess

from agent.settings import load_settings_or_exit
from agent.workers.models import english_realtime_models
from agent.workers.process import (
    job_moderator,
    job_writer,
    prewarm_process,
    schedule_maintenance,
    server_options,
)
from agent.workers.runner import serve_room_job

settings = load_settings_or_exit("learning-english")
WORKER = settings.english_agent_name


def prewarm(proc: JobProcess) -> None:
    """Once per job process, before its job: the realtime model and the TTS of its fixed
    lines, the records store, the moderation client and the trace exporter."""
    proc.userdata["english"] = english_realtime_models(settings)
    prewarm_process(proc, settings, WORKER)


server = AgentServer(setup_fnc=prewarm, **server_options(settings, WORKER))
schedule_maintenance(server, settings)


@server.rtc_session(agent_name=WORKER)
async def entrypoint(ctx: JobContext) -> None:
    english = ctx.proc.userdata["english"]
    await serve_room_job(
        ctx,
        kind="english",
        settings=settings,
        tutor_models={"english": english},
        session_models={"tts": english.tts},
        workers={"orchestrator": settings.orchestrator_agent_name},
        worker=WORKER,
        records=job_writer(ctx, settings),
        moderator=job_moderator(ctx),
    )
