"""The typed dispatch plan: what a dispatch tells the job it starts, in both directions.

Every dispatch of the product is made from a `DispatchPlan` (`to_metadata`: the student's
token, the web service's re-dispatch, a crossing to another worker) and every job reads its
own with `from_metadata`. The wire format is the `key:value|` codec of
`agent.dispatch.metadata`; this class is the one place that knows its keys. To pass one more
thing from one tutor to the next, add a field here (with its key in both methods).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.dispatch.metadata import dispatch_metadata, parse_dispatch_metadata

SESSION_KEY = "session"
# the session key of a dispatch back to the orchestrator from another worker (its name
# predates the roster, when English was the only other worker)
RETURNING_SESSION_KEY = "return_from_english"


@dataclass(frozen=True)
class DispatchPlan:
    """What a dispatch says its job is."""

    session_id: str | None = None  # the conversation (records and resume are keyed by it)
    student: str = ""  # the student's participant identity
    question: str | None = None  # the question the incoming tutor answers first
    handover_id: str | None = None  # the floor handover this job completes
    outgoing: str | None = None  # identity of the tutor handing over to this job
    returning: bool = False  # back to the orchestrator from another worker
    tutor: str | None = None  # the tutor to take over (None: the worker's default)

    @property
    def is_handover(self) -> bool:
        return bool(self.handover_id and self.outgoing)

    def to_metadata(self) -> str:
        """The dispatch's metadata (`question` capped to fit; raises ValueError if the rest
        does not fit)."""
        fields = {
            SESSION_KEY: None if self.returning else self.session_id,
            "student": self.student,
            "question": self.question,
            "handover": self.handover_id,
            "from": self.outgoing,
            "tutor": self.tutor,
        }
        if self.returning:
            fields[RETURNING_SESSION_KEY] = self.session_id
        return dispatch_metadata(**fields)

    @classmethod
    def from_metadata(cls, metadata: str | bytes | None) -> DispatchPlan:
        """Read `ctx.job.metadata`; unreadable parts are dropped (the parser logs a warning)."""
        fields = parse_dispatch_metadata(metadata)
        returning_session = fields.get(RETURNING_SESSION_KEY)
        return cls(
            session_id=returning_session or fields.get(SESSION_KEY) or None,
            student=fields.get("student", ""),
            question=fields.get("question", "").strip() or None,
            handover_id=fields.get("handover") or None,
            outgoing=fields.get("from") or None,
            returning=bool(returning_session),
            tutor=fields.get("tutor", "").strip() or None,
        )
