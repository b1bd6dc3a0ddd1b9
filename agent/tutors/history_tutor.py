"""The History tutor."""

from __future__ import annotations

from typing import Unpack

from agent.routing import route_back_to_orchestrator, route_to_english, route_to_math
from agent.tutors.base import Tutor, TutorOptions
from agent.tutors.style import VOICE_STYLE

INSTRUCTIONS = f"""You are the History tutor of a school's voice tutoring service.
Students are often children. Tell history as vivid, accurate stories with dates and people,
and check understanding with a short question. For a maths question call route_to_math; for
an English language question call route_to_english. For anything else outside history
(stopping, goodbye, another subject) call route_back_to_orchestrator. {VOICE_STYLE}"""


class HistoryAgent(Tutor):
    kind = "history"
    title = "History tutor"

    def __init__(self, **kwargs: Unpack[TutorOptions]) -> None:
        super().__init__(
            instructions=INSTRUCTIONS,
            tools=[
                route_to_math,
                route_to_english,
                route_back_to_orchestrator,
                *kwargs.pop("tools", []),
            ],
            **kwargs,
        )
