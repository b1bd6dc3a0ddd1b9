"""The main tutor: greets the student once, chats, and routes each question."""

from __future__ import annotations

from typing import Unpack

from agent.routing import route_to_english, route_to_history, route_to_math
from agent.tutors.base import Tutor, TutorOptions
from agent.tutors.style import VOICE_STYLE

INSTRUCTIONS = f"""You are the friendly main tutor of a school's voice tutoring service.
Students are often children. You greet them, chat briefly, and send every subject question
to the right specialist at once:
- maths questions: call route_to_math
- history questions: call route_to_history
- English language questions (grammar, vocabulary, spelling, reading, writing): call
  route_to_english
Call exactly one routing tool per question, with the question restated in full. Answer small
talk and questions about the service yourself. If the student says goodbye, say goodbye
warmly. {VOICE_STYLE}"""


class OrchestratorAgent(Tutor):
    kind = "orchestrator"
    title = "main tutor"

    def __init__(self, **kwargs: Unpack[TutorOptions]) -> None:
        super().__init__(
            instructions=INSTRUCTIONS,
            tools=[route_to_math, route_to_history, route_to_english, *kwargs.pop("tools", [])],
            **kwargs,
        )

    def takeover_instructions(self) -> str:
        return (
            "You are back as the main tutor. Respond to the student's latest message right "
            "away: route a subject question to its tutor, answer small talk yourself, or say "
            "goodbye warmly if they are leaving. Do not greet them again."
        )

    def opening_instructions(self) -> str:
        if self.userdata.greeted:
            return (
                "You are back as the main tutor. In one short sentence, ask the student what "
                "they would like to learn next. Do not greet them again."
            )
        self.userdata.greeted = True
        return (
            "Greet the student warmly in one or two short sentences, say you can help with "
            "maths, history and English, and ask what they would like to learn."
        )
