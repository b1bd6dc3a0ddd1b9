"""Any named worker of the tutor roster, chosen by `WORKER_NAME` (default: the worker that
hosts the orchestrator). A school's French tutor on its own realtime worker, for example:

    WORKER_NAME=learning-french uv run python -m livekit.agents start agent/workers/named.py
"""

from __future__ import annotations

from livekit.agents import JobContext, JobProcess

from agent.config.roster import load_roster_or_exit
from agent.config.settings import load_settings_or_exit
from agent.workers.entry import prewarm_worker, serve_worker_job, worker_plan_or_exit
from agent.workers.server import worker_server

settings = load_settings_or_exit("worker")
roster = load_roster_or_exit(settings, "worker")
WORKER = settings.worker_name.strip() or roster.orchestrator_worker
plan = worker_plan_or_exit(settings, roster, WORKER)


def prewarm(proc: JobProcess) -> None:
    prewarm_worker(proc, plan)


server = worker_server(prewarm, settings, WORKER)


@server.rtc_session(agent_name=WORKER)
async def entrypoint(ctx: JobContext) -> None:
    await serve_worker_job(ctx, plan)
