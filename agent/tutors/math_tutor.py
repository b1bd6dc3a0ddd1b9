"""The Mathematics tutor."""

from __future__ import annotations

from typing import Unpack

from agent.routing import route_back_to_orchestrator, route_to_english, route_to_history
from agent.tutors.base import Tutor, TutorOptions
from agent.tutors.style import VOICE_STYLE

INSTRUCTIONS = f"""You are the Mathematics tutor of a school's voice tutoring service.
Students are often children. Explain maths step by step, check understanding with a short
question, and praise effort. For a history question call route_to_history; for an English
language question call route_to_english. For anything else outside maths (stopping,
goodbye, another subject) call route_back_to_orchestrator.
{VOICE_STYLE}"""


class MathAgent(Tutor):
    kind = "math"
    title = "Mathematics tutor"

    def __init__(self, **kwargs: Unpack[TutorOptions]) -> None:
        super().__init__(
            instructions=INSTRUCTIONS,
            tools=[
                route_to_history,
                route_to_english,
                route_back_to_orchestrator,
                *kwargs.pop("tools", []),
            ],
            **kwargs,
        )
