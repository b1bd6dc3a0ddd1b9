"""The `learning-orchestrator` worker: Orchestrator, Math and History in one session.

Run it with the livekit-agents CLI, which finds the module-level `server`:

    uv run python -m livekit.agents start agent/workers/orchestrator.py
"""

from __future__ import annotations

import logging

from livekit.agents import AgentServer, JobContext, JobProcess
from livekit.plugins import silero

from agent.session import create_session
from agent.settings import SettingsError, get_settings
from agent.state import SessionUserdata
from agent.tutors import OrchestratorAgent
from agent.workers.models import pipeline_tutor_models, session_stt

logger = logging.getLogger("tutor.worker")

try:
    settings = get_settings()
except SettingsError as e:
    raise SystemExit(f"learning-orchestrator: {e}") from None


def prewarm(proc: JobProcess) -> None:
    """Once per worker process: load the Silero VAD that every job of it reuses."""
    proc.userdata["vad"] = silero.VAD.load()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session(agent_name=settings.orchestrator_agent_name)
async def entrypoint(ctx: JobContext) -> None:
    participant = await ctx.wait_for_participant()
    userdata = SessionUserdata(
        student_identity=participant.identity,
        room_name=ctx.room.name,
        tutor_models=pipeline_tutor_models(settings),
        max_handoffs_without_student_turn=settings.max_handoffs_without_student_turn,
    )
    orchestrator_models = userdata.tutor_models["orchestrator"]
    session = create_session(
        userdata,
        stt=session_stt(settings),
        llm=orchestrator_models.llm,
        tts=orchestrator_models.tts,
        vad=ctx.proc.userdata["vad"],
    )
    logger.info("job started", extra={**userdata.log_fields(), "job_id": ctx.job.id})
    await session.start(OrchestratorAgent(**orchestrator_models.as_kwargs()), room=ctx.room)
