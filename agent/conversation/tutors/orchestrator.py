"""The main tutor: greets the student once, chats, and routes each question."""

from __future__ import annotations

from agent.conversation.instructions import subjects_sentence
from agent.conversation.tutor import Tutor


class OrchestratorAgent(Tutor):
    """The roster's `orchestrator`: every student starts with it, and it routes to every
    tutor. It greets only once per conversation, and never again when a student returns."""

    kind = "orchestrator"

    def takeover_instructions(self) -> str:
        return (
            f"You are back as the {self.title}. Respond to the student's latest message right "
            "away: route a subject question to its tutor, answer small talk yourself, or say "
            "goodbye warmly if they are leaving. Do not greet them again."
        )

    def opening_instructions(self) -> str:
        if self.userdata.greeted:
            return (
                f"You are back as the {self.title}. In one short sentence, ask the student "
                "what they would like to learn next. Do not greet them again."
            )
        self.userdata.greeted = True
        return (
            "Greet the student warmly in one or two short sentences, say you can connect them "
            f"with {subjects_sentence(self.userdata.roster)}, and ask what they would like to "
            "learn."
        )
