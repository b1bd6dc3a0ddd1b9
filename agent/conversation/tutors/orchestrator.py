"""The main tutor: greets the student once, chats, and routes each question."""

from __future__ import annotations

from agent.conversation.instructions import (
    GREETING,
    ORCHESTRATOR_NEXT,
    ORCHESTRATOR_TAKEOVER,
    subjects_sentence,
)
from agent.conversation.tutor import Tutor


class OrchestratorAgent(Tutor):
    """The roster's `orchestrator`: every student starts with it, and it routes to every
    tutor. It greets only once per conversation, and never again when a student returns."""

    kind = "orchestrator"

    def takeover_instructions(self) -> str:
        return ORCHESTRATOR_TAKEOVER.format(title=self.title)

    def opening_instructions(self) -> str:
        if self.userdata.greeted:
            return ORCHESTRATOR_NEXT.format(title=self.title)
        self.userdata.greeted = True
        return GREETING.format(subjects=subjects_sentence(self.userdata.roster))
