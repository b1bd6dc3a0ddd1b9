"""The History tutor: its own class name for the roster's `history` entry."""

from __future__ import annotations

from agent.conversation.tutor import Tutor


class HistoryAgent(Tutor):
    """The roster's `history` tutor (title, instructions, voice and routes: tutors.toml)."""

    kind = "history"
