"""The fixed lines a tutor says in place of generated text. Never generated, never checked:
they are ours. Each is spoken in the voice of the tutor that has the floor."""

from __future__ import annotations

from agent.safety.moderation import Tier

# a concern (a rude or unsafe turn): do not engage, steer back to learning
REDIRECT_LINE = "Let's keep our chat kind and safe. What would you like to learn about next?"

# an urgent disclosure: calm, kind, and towards a trusted adult now
SAFEGUARDING_LINE = (
    "Thank you for telling me. You are not in trouble. What you said is important, so please "
    "talk to a trusted adult, like your teacher or someone at home, right now."
)

# moderation could not check the turn (fail closed): nothing generated is said
SORRY_LINE = "Sorry, could you say that again?"

# the first check timed out (an overloaded moment): said while it is tried once more
ONE_MOMENT_LINE = "One moment, please."


# a teacher ended the visit from the live page: the tutor's last words
TEACHER_ENDED_LINE = "Your teacher has ended our chat for now. Well done today, goodbye!"


def line_for(tier: Tier, helpline: str = "") -> str:
    """What the child hears after a flagged turn of this tier (`helpline`: the school's own
    sentence, e.g. a helpline number, appended to the safeguarding line)."""
    if tier == "urgent":
        return f"{SAFEGUARDING_LINE} {helpline.strip()}".strip()
    return REDIRECT_LINE


def is_fixed_line(text: str) -> bool:
    """One of the lines above (the safeguarding line may end with the school's helpline)."""
    text = text.strip()
    return text in (
        REDIRECT_LINE,
        SORRY_LINE,
        ONE_MOMENT_LINE,
        TEACHER_ENDED_LINE,
    ) or text.startswith(SAFEGUARDING_LINE)


def replaced_a_reply(text: str) -> bool:
    """Whether a tutor's turn was a fixed line said instead of its reply: the student's words
    before it were flagged, or could not be checked (the hold line may come first)."""
    text = text.strip().removeprefix(ONE_MOMENT_LINE).strip()
    return text in (REDIRECT_LINE, SORRY_LINE) or text.startswith(SAFEGUARDING_LINE)
