"""Per-conversation state shared by every tutor of one `AgentSession`.

The lowest type of the conversation: it knows the features a session carries (records,
moderation, crossings to other workers, presence) only by the small protocols below, which
those features fill in; it imports none of them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from livekit.agents import llm, stt, tts
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from agent.config.roster import Roster, shipped_roster
from agent.conversation.presence import AttributePublisher

if TYPE_CHECKING:
    from livekit.agents import AgentSession

# a tutor's kind: the name of its table in the roster (e.g. "math")
TutorKind = str

MAX_HANDOFFS_WITHOUT_STUDENT_TURN = 3

# marks a user message we put into the context ourselves (not something the student said)
SYNTHETIC_TURN_KEY = "tutor.synthetic_turn"


def is_synthetic_turn(message: llm.ChatMessage) -> bool:
    return SYNTHETIC_TURN_KEY in message.extra


@dataclass(frozen=True)
class TutorModels:
    """Optional per-tutor models; anything left unset falls back to the session's."""

    llm: NotGivenOr[llm.LLM | llm.RealtimeModel] = NOT_GIVEN
    stt: NotGivenOr[stt.STT] = NOT_GIVEN
    tts: NotGivenOr[tts.TTS] = NOT_GIVEN

    def as_kwargs(self) -> dict[str, Any]:
        return {"llm": self.llm, "stt": self.stt, "tts": self.tts}


HandoffMode = Literal["in_session", "cross_worker"]


@dataclass(frozen=True)
class HandoffNote:
    """A handoff in progress: who hands whom to whom, since when, about what."""

    from_tutor: TutorKind | Literal[""]
    to_tutor: TutorKind
    mode: HandoffMode
    question: str = ""
    handoff_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    requested_at: float = field(default_factory=time.time)


class SessionRecords(Protocol):
    """What the session records (`agent.records.recorder.SessionRecorder`)."""

    def attach(self, session: AgentSession[Any], *, resumed: bool = False) -> None: ...
    def leaving(self) -> None: ...
    def end(self, reason: str) -> None: ...
    def handoff(self, note: HandoffNote, outcome: str, *, ready_after: float | None) -> None: ...
    def handoff_gap(self, note: HandoffNote, gap: float) -> None: ...


class TurnModeration(Protocol):
    """Moderation of the session's turns (`agent.safety.guard.SafetyGuard`)."""

    def attach(self, session: AgentSession[Any]) -> None: ...


class WorkerCrossing(Protocol):
    """Handing the student to a tutor of another worker (`agent.handover.outgoing.Crossing`)."""

    workers: Mapping[TutorKind, str]  # tutors hosted by other workers -> their worker name

    def start(self, session: AgentSession[Any], target: TutorKind, question: str) -> None: ...
    async def abort(self) -> None: ...


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class SessionUserdata:
    session_id: str = field(default_factory=new_session_id)
    student_identity: str = ""
    room_name: str = ""
    subjects_visited: list[TutorKind] = field(default_factory=list)
    handoff_count: int = 0
    handoffs_since_student_turn: int = 0
    max_handoffs_without_student_turn: int = MAX_HANDOFFS_WITHOUT_STUDENT_TURN
    greeted: bool = False
    active_tutor: TutorKind | None = None
    # the tutors of this conversation: who exists, how each routes and sounds
    roster: Roster = field(default_factory=shipped_roster)
    # models each tutor is built with when a handoff creates it (the worker fills this in)
    tutor_models: dict[TutorKind, TutorModels] = field(default_factory=dict)
    # the speech (model turn) that already handed off: a second route call in it is dropped
    routing_speech_id: str | None = None
    # set by a worker that can hand the student to tutors on other workers
    crossing: WorkerCrossing | None = None
    # what this job records of the session (None: records are off)
    recorder: SessionRecords | None = None
    # moderation of this session's turns (None: moderation is off)
    safety: TurnModeration | None = None
    # where the active tutor's identity is published for the student's page (None: nowhere)
    presence: AttributePublisher | None = None
    # lines queued in this session but spoken in another tutor's voice: text -> that tutor
    spoken_as: dict[str, TutorKind] = field(default_factory=dict)

    def note_student_turn(self) -> None:
        self.handoffs_since_student_turn = 0

    def note_handoff(self, target: TutorKind) -> None:
        self.handoff_count += 1
        self.handoffs_since_student_turn += 1
        if target not in self.subjects_visited:
            self.subjects_visited.append(target)

    def log_fields(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "student": self.student_identity,
            "tutor": self.active_tutor,
        }
