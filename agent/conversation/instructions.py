"""A tutor's instructions: its roster entry's own text, the routes it has, the shared style."""

from __future__ import annotations

from agent.config.roster import ORCHESTRATOR, Roster
from agent.conversation.style import VOICE_STYLE


def tutor_instructions(roster: Roster, kind: str) -> str:
    """What the `kind` tutor's model is told: who it is (the roster's `instructions`), when
    to call each of its routing tools, and how to speak."""
    spec = roster.tutor(kind)
    return f"{spec.instructions}\n{routing_instructions(roster, kind)}\n{VOICE_STYLE}"


def routing_instructions(roster: Roster, kind: str) -> str:
    targets = [roster.tutor(target) for target in roster.routes_of(kind)]
    if kind == ORCHESTRATOR:
        lines = "\n".join(f"- call route_to_{t.kind} for {_covers(t.covers)}" for t in targets)
        return (
            f"Send every subject question to the right tutor at once:\n{lines}\n"
            "Call exactly one routing tool per question, with the question restated in full."
        )
    direct = "".join(f"Call route_to_{t.kind} for {_covers(t.covers)}. " for t in targets)
    return (
        f"{direct}For anything else outside your subject (stopping, goodbye, another "
        "subject) call route_back_to_orchestrator."
    )


def subjects_sentence(roster: Roster) -> str:
    """The tutors the orchestrator can connect a student with, for its greeting."""
    titles = [f"the {roster.tutor(kind).title}" for kind in roster.routes_of(ORCHESTRATOR)]
    if len(titles) > 1:
        return f"{', '.join(titles[:-1])} and {titles[-1]}"
    return titles[0] if titles else "no other tutor"


def _covers(covers: str) -> str:
    return covers.rstrip(". ")
