"""The worker that hosts the orchestrator (`learning-orchestrator` in the shipped roster):
a pipeline session where the orchestrator and the tutors beside it hand off in-session.

Run it with the livekit-agents CLI, which finds the module-level `server`:

    uv run python -m livekit.agents start agent/workers/orchestrator.py
"""

from __future__ import annotations

from livekit.agents import JobContext, JobProcess

from agent.config.roster import load_roster_or_exit
from agent.config.settings import load_settings_or_exit
from agent.workers.entry import prewarm_worker, serve_worker_job, worker_plan_or_exit
from agent.workers.server import worker_server

settings = load_settings_or_exit("learning-orchestrator")
roster = load_roster_or_exit(settings, "learning-orchestrator")
WORKER = roster.orchestrator_worker
plan = worker_plan_or_exit(settings, roster, WORKER)


def prewarm(proc: JobProcess) -> None:
    prewarm_worker(proc, plan)


server = worker_server(prewarm, settings, WORKER)


@server.rtc_session(agent_name=WORKER)
async def entrypoint(ctx: JobContext) -> None:
    await serve_worker_job(ctx, plan)
