"""The `learning-orchestrator` worker: Orchestrator, Math and History in one session.

Run it with the livekit-agents CLI, which finds the module-level `server`:

    uv run python -m livekit.agents start agent/workers/orchestrator.py
"""

from __future__ import annotations

from livekit.agents import AgentServer, JobContext, JobProcess
from livekit.plugins import silero

from agent.settings import load_settings_or_exit
from agent.workers.models import pipeline_tutor_models, session_stt
from agent.workers.runner import serve_room_job

settings = load_settings_or_exit("learning-orchestrator")


def prewarm(proc: JobProcess) -> None:
    """Once per worker process: load the Silero VAD that every job of it reuses."""
    proc.userdata["vad"] = silero.VAD.load()


server = AgentServer(setup_fnc=prewarm, port=settings.worker_http_port)


@server.rtc_session(agent_name=settings.orchestrator_agent_name)
async def entrypoint(ctx: JobContext) -> None:
    tutor_models = pipeline_tutor_models(settings)
    await serve_room_job(
        ctx,
        kind="orchestrator",
        settings=settings,
        tutor_models=tutor_models,
        session_models={
            "stt": session_stt(settings),
            "vad": ctx.proc.userdata["vad"],
            "llm": tutor_models["orchestrator"].llm,
            "tts": tutor_models["orchestrator"].tts,
        },
        workers={"english": settings.english_agent_name},
    )
