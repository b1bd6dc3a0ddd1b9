"""Any named worker of the tutor roster, chosen by `WORKER_NAME` (default: the worker that
hosts the orchestrator). A school's French tutor on its own realtime worker, for example:

    WORKER_NAME=learning-french uv run python -m livekit.agents start agent/workers/named.py
"""

from __future__ import annotations

from agent.workers.entry import plan_server, worker_plan

plan = worker_plan(
    "worker", lambda settings, roster: settings.worker_name.strip() or roster.orchestrator_worker
)
prewarm, entrypoint = plan.prewarm, plan.serve
server = plan_server(plan, prewarm, entrypoint)
