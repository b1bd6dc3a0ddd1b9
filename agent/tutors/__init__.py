"""The tutors, made from the roster; the named classes of the shipped roster's tutors
register with `build_tutor`."""

from agent.tutors.base import Tutor, build_tutor
from agent.tutors.english_tutor import EnglishAgent
from agent.tutors.history_tutor import HistoryAgent
from agent.tutors.math_tutor import MathAgent
from agent.tutors.orchestrator import OrchestratorAgent

__all__ = [
    "EnglishAgent",
    "HistoryAgent",
    "MathAgent",
    "OrchestratorAgent",
    "Tutor",
    "build_tutor",
]
