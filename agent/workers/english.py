"""The worker that hosts the English tutor (`learning-english` in the shipped roster: the
English tutor on a speech-to-speech realtime model).

It is brought into a student's room by an explicit dispatch from another tutor, and hands
the student back the same way. Run it with:

    uv run python -m livekit.agents start agent/workers/english.py
"""

from __future__ import annotations

from livekit.agents import JobContext, JobProcess

from agent.config.roster import load_roster_or_exit
from agent.config.settings import load_settings_or_exit
from agent.workers.entry import prewarm_worker, serve_worker_job, worker_plan_or_exit
from agent.workers.server import worker_server

settings = load_settings_or_exit("learning-english")
roster = load_roster_or_exit(settings, "learning-english")
if "english" not in roster.tutors:
    raise SystemExit(
        f"learning-english: the tutor roster {roster.source} has no english tutor "
        "(start its workers with WORKER_NAME and agent/workers/named.py)"
    )
WORKER = roster.tutor("english").worker
plan = worker_plan_or_exit(settings, roster, WORKER)


def prewarm(proc: JobProcess) -> None:
    prewarm_worker(proc, plan)


server = worker_server(prewarm, settings, WORKER)


@server.rtc_session(agent_name=WORKER)
async def entrypoint(ctx: JobContext) -> None:
    await serve_worker_job(ctx, plan)
