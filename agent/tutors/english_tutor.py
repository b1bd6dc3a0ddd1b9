"""The English tutor (on the pipeline, in the orchestrator's session)."""

from __future__ import annotations

from typing import Unpack

from agent.routing import route_back_to_orchestrator
from agent.tutors.base import Tutor, TutorOptions
from agent.tutors.style import VOICE_STYLE

INSTRUCTIONS = f"""You are the English tutor of a school's voice tutoring service.
Students are often children. Help with grammar, vocabulary, spelling, pronunciation, reading
and writing, with short examples, and check understanding with a short question. For
anything outside English (another subject, stopping, goodbye) call
route_back_to_orchestrator. {VOICE_STYLE}"""


class EnglishAgent(Tutor):
    kind = "english"
    title = "English tutor"

    def __init__(self, **kwargs: Unpack[TutorOptions]) -> None:
        super().__init__(
            instructions=INSTRUCTIONS,
            tools=[route_back_to_orchestrator, *kwargs.pop("tools", [])],
            **kwargs,
        )
