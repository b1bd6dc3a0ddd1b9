"""More patience for a student who goes on speaking over the tutor's reply.

A child who pauses mid-thought for longer than the usual endpointing delay hears the tutor
start; their voice stops it at once (the framework's false-interruption pause), and the
reply to the whole sentence follows. A child who paused once in a turn often pauses again:
measured on real children, the tutor would start over them a second time. So once the
student speaks while the tutor is speaking, the rest of that turn waits
`RESUMED_ENDPOINTING_DELAY` of silence; the usual delays come back as soon as the tutor
speaks again (the turn was answered, or the sound was not speech and the tutor resumed).
With `ENDPOINTING_MODE=dynamic` the framework learns the same from the child's pauses (an
immediate interruption raises its delay), and changing its options would reset what it
learned: there is no patience of ours then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession, AgentStateChangedEvent, UserStateChangedEvent

from agent.config.settings import TurnSettings

logger = logging.getLogger("tutor.turns")


@dataclass
class Patience:
    """How long a turn's silence must last, and whether this turn has earned more."""

    min_delay: float
    max_delay: float
    resumed_delay: float
    raised: bool = False
    tutor_speaking: bool = False

    def student_state(self, state: str) -> dict[str, float] | None:
        """The endpointing to switch to as the student's state changes, if any: more
        patience when they start speaking over the tutor."""
        if state != "speaking" or self.raised or not self.tutor_speaking:
            return None
        if self.resumed_delay <= self.min_delay:
            return None
        self.raised = True
        return {
            "min_delay": self.resumed_delay,
            "max_delay": max(self.max_delay, self.resumed_delay),
        }

    def tutor_state(self, state: str) -> dict[str, float] | None:
        """The endpointing to switch to as the tutor's state changes, if any: the usual
        delays once the tutor speaks again."""
        self.tutor_speaking = state == "speaking"
        if not self.tutor_speaking or not self.raised:
            return None
        self.raised = False
        return {"min_delay": self.min_delay, "max_delay": self.max_delay}


def patience_for(settings: TurnSettings) -> Patience | None:
    """A fresh `Patience` for one session, from the turn settings; None with dynamic
    endpointing, which learns its own."""
    if settings.endpointing_mode == "dynamic":
        return None
    return Patience(
        min_delay=settings.min_endpointing_delay,
        max_delay=settings.max_endpointing_delay,
        resumed_delay=settings.resumed_endpointing_delay,
    )


def keep_patience(session: AgentSession[Any], patience: Patience) -> None:
    """Raise the session's endpointing delay for the rest of a turn the student goes on with
    over the tutor, and restore it when the tutor speaks again."""

    def update(endpointing: dict[str, float] | None) -> None:
        if endpointing is not None:
            session.update_options(endpointing_opts=endpointing)  # type: ignore[arg-type]
            logger.debug("endpointing delays now %s", endpointing)

    def on_user_state(event: UserStateChangedEvent) -> None:
        update(patience.student_state(event.new_state))

    def on_agent_state(event: AgentStateChangedEvent) -> None:
        update(patience.tutor_state(event.new_state))

    session.on("user_state_changed", on_user_state)
    session.on("agent_state_changed", on_agent_state)
