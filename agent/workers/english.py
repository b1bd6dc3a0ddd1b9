"""The `learning-english` worker: the English tutor on a speech-to-speech realtime model.

It is brought into a student's room by an explicit dispatch from the orchestrator, and
hands the student back the same way. Run it with:

    uv run python -m livekit.agents start agent/workers/english.py
"""

from __future__ import annotations

from livekit.agents import AgentServer, JobContext

from agent.livekit_room import LiveKitHandoverRoom
from agent.settings import load_settings_or_exit
from agent.workers.models import dispatcher_for, english_realtime_models
from agent.workers.runner import JobDeps, run_tutor_job

settings = load_settings_or_exit("learning-english")

server = AgentServer(port=settings.worker_http_port)


@server.rtc_session(agent_name=settings.english_agent_name)
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    english = english_realtime_models(settings)
    dispatcher = dispatcher_for(settings)
    ctx.add_shutdown_callback(dispatcher.aclose)
    deps = JobDeps(
        tutor_models={"english": english},
        session_models={"tts": english.tts},
        dispatcher=dispatcher,
        handover_room=LiveKitHandoverRoom(ctx.room),
        workers={"orchestrator": settings.orchestrator_agent_name},
        start_options={"room": ctx.room},
    )
    await run_tutor_job(ctx, kind="english", settings=settings, deps=deps)
