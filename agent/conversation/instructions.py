"""What a tutor's model is told: its instructions (its roster entry's own text, the routes it
has, the shared style), and the instructions of the replies a tutor makes on its own (on
taking over, on opening, on the student's return)."""

from __future__ import annotations

from agent.config.roster import ORCHESTRATOR, Roster
from agent.conversation.style import VOICE_STYLE

# a tutor whose roster entry says `teaching_style = "guide"`
GUIDE_STYLE = (
    "Teach by guiding: do not give the answer straight away. Ask one small question that "
    "leads the student to the next step, give a hint if they are stuck, and let them reach "
    "the answer themselves."
)

# the reply of a tutor that has just taken over, opens, or sees the student come back
TAKEOVER = (
    "You have just taken over as the {title}. Answer the student's latest question right "
    "away, in a sentence or two, without greeting at length and without asking them to "
    "repeat it."
)
OPENING = (
    "You have just taken over as the {title}. Introduce yourself in one short sentence and "
    "ask the student what they would like to learn."
)
WELCOME_BACK = (
    "The student has just come back after their connection dropped; the conversation so far "
    "is above and you are still the {title}. In one short sentence, welcome them back and "
    "recall what you were working on, then ask whether to go on. Do not introduce yourself "
    "or greet them as a new student."
)
# the orchestrator's: it greets once per conversation, and never again
GREETING = (
    "Greet the student warmly in one or two short sentences, say you can connect them with "
    "{subjects}, and ask what they would like to learn."
)
ORCHESTRATOR_TAKEOVER = (
    "You are back as the {title}. Respond to the student's latest message right away: route "
    "a subject question to its tutor, answer small talk yourself, or say goodbye warmly if "
    "they are leaving. Do not greet them again."
)
ORCHESTRATOR_NEXT = (
    "You are back as the {title}. In one short sentence, ask the student what they would "
    "like to learn next. Do not greet them again."
)


def tutor_instructions(roster: Roster, kind: str) -> str:
    """What the `kind` tutor's model is told: who it is (the roster's `instructions`), when
    to call each of its routing tools, and how to speak."""
    spec = roster.tutor(kind)
    style = f"\n{GUIDE_STYLE}" if spec.teaching_style == "guide" else ""
    return f"{spec.instructions}{style}\n{routing_instructions(roster, kind)}\n{VOICE_STYLE}"


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
