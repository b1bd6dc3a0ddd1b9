"""The worker that hosts the English tutor (`learning-english` in the shipped roster: the
English tutor on a speech-to-speech realtime model).

It is brought into a student's room by an explicit dispatch from another tutor, and hands
the student back the same way. Run it with:

    uv run python -m livekit.agents start agent/workers/english.py
"""

from __future__ import annotations

from agent.config.roster import Roster
from agent.config.settings import Settings
from agent.workers.entry import plan_server, worker_plan


def english_worker(_settings: Settings, roster: Roster) -> str:
    if "english" not in roster.tutors:
        raise SystemExit(
            f"learning-english: the tutor roster {roster.source} has no english tutor "
            "(start its workers with WORKER_NAME and agent/workers/named.py)"
        )
    return roster.tutor("english").worker


plan = worker_plan("learning-english", english_worker)
prewarm, entrypoint = plan.prewarm, plan.serve
server = plan_server(plan, prewarm, entrypoint)
