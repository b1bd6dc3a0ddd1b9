"""The English tutor: its own class name for the roster's `english` entry."""

from __future__ import annotations

from agent.conversation.tutor import Tutor


class EnglishAgent(Tutor):
    """The roster's `english` tutor (title, instructions, voice and routes: tutors.toml)."""

    kind = "english"
