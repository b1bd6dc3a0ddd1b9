"""The records a session produces, as plain values (what the writer queues and the store
writes). Times are POSIX seconds, as the framework gives them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SessionStarted:
    """A job joined the session (the first one creates it, later ones change nothing)."""

    session_id: str
    student: str
    room: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SessionResumed:
    """A job continues the session after its end (the student came back): it is open again.
    An end recorded before `at` and written after it does not close it again."""

    session_id: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SessionEnded:
    """The session is over (the student left, the room closed, or it failed)."""

    session_id: str
    reason: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TurnRecord:
    session_id: str
    item_id: str
    speaker: str  # "student" or the tutor kind
    text: str
    at: float
    worker: str = ""
    synthetic: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class HandoffRecord:
    session_id: str
    handoff_id: str
    from_tutor: str
    to_tutor: str
    mode: str  # "in_session" or "cross_worker"
    outcome: str  # "completed", "handed_over", "fallback_not_ready", ...
    question: str
    requested_at: float
    completed_at: float | None = None
    ready_after_s: float | None = None
    silence_gap_s: float | None = None
    worker: str = ""


@dataclass(frozen=True)
class HandoffGap:
    """The silence measured between a handoff's line and the incoming tutor's first audio."""

    session_id: str
    handoff_id: str
    seconds: float


@dataclass(frozen=True)
class FlagRecord:
    session_id: str
    flag_id: str
    speaker: str
    tier: str
    categories: list[str]
    scores: dict[str, float]
    action: str
    text: str
    at: float = field(default_factory=time.time)
    turn_item_id: str | None = None


@dataclass(frozen=True)
class AlertRecord:
    alert_id: str
    session_id: str
    flag_id: str
    channel: str
    tier: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)


Record = (
    SessionStarted
    | SessionResumed
    | SessionEnded
    | TurnRecord
    | HandoffRecord
    | HandoffGap
    | FlagRecord
    | AlertRecord
)
