"""The Mathematics tutor: its own class name for the roster's `math` entry."""

from __future__ import annotations

from agent.conversation.tutor import Tutor


class MathAgent(Tutor):
    """The roster's `math` tutor (title, instructions, voice and routes: tutors.toml)."""

    kind = "math"
