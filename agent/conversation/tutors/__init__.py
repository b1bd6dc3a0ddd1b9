"""The named classes of the shipped roster's tutors; each registers for its kind, so that
`agent.conversation.routing.build_tutor` makes that class (any other kind is a `Tutor`)."""

from agent.conversation.tutor import Tutor
from agent.conversation.tutors.english_tutor import EnglishAgent
from agent.conversation.tutors.history_tutor import HistoryAgent
from agent.conversation.tutors.math_tutor import MathAgent
from agent.conversation.tutors.orchestrator import OrchestratorAgent

__all__ = [
    "EnglishAgent",
    "HistoryAgent",
    "MathAgent",
    "OrchestratorAgent",
    "Tutor",
]
