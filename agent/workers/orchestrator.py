"""The worker that hosts the orchestrator (`learning-orchestrator` in the shipped roster):
a pipeline session where the orchestrator and the tutors beside it hand off in-session.

Run it with the livekit-agents CLI, which finds the module-level `server`:

    uv run python -m livekit.agents start agent/workers/orchestrator.py
"""

from __future__ import annotations

from agent.workers.entry import plan_server, worker_plan

plan = worker_plan("learning-orchestrator", lambda _settings, roster: roster.orchestrator_worker)
prewarm, entrypoint = plan.prewarm, plan.serve
server = plan_server(plan, prewarm, entrypoint)
