"""Turns one job's `AgentSession` events into records, under the session id that travels
with every crossing (so each worker adds its part to the same transcript)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from livekit.agents import AgentSession, CloseEvent, ConversationItemAddedEvent, llm

from agent.conversation.state import is_synthetic_turn
from agent.records.models import (
    HandoffGap,
    HandoffRecord,
    SessionEnded,
    SessionResumed,
    SessionStarted,
    TurnRecord,
)
from agent.records.writer import RecordWriter

if TYPE_CHECKING:
    from agent.conversation.state import HandoffNote, SessionUserdata

logger = logging.getLogger("tutor.records")


class SessionRecorder:
    """What one job records. `attach` it to the session before `session.start`."""

    def __init__(self, writer: RecordWriter, userdata: SessionUserdata, *, worker: str) -> None:
        self.writer = writer
        self.userdata = userdata
        self.worker = worker
        self.left_without_ending = False  # the job handed the student on (or never had them)
        self._ended = False

    @property
    def session_id(self) -> str:
        return self.userdata.session_id

    def attach(self, session: AgentSession[Any], *, resumed: bool = False) -> None:
        """Record the session from now on; `resumed`: it continues one the records hold
        (open again, whatever ended it)."""
        userdata = self.userdata
        self.writer.submit(
            SessionStarted(userdata.session_id, userdata.student_identity, userdata.room_name)
        )
        if resumed:
            self.writer.submit(SessionResumed(userdata.session_id))
        session.on("conversation_item_added", self._on_item)
        session.on("close", self._on_close)

    def leaving(self) -> None:
        """This job leaves but the student's session goes on (a handover, or a handover
        that was cancelled before this job had the floor)."""
        self.left_without_ending = True

    def end(self, reason: str) -> None:
        """The session is over, for `reason` (before the session's own close event)."""
        if not self._ended:
            self._ended = True
            self.writer.submit(SessionEnded(self.session_id, reason))

    def handoff(self, note: HandoffNote, outcome: str, *, ready_after: float | None) -> None:
        self.writer.submit(
            HandoffRecord(
                session_id=self.session_id,
                **asdict(note),  # who, to whom, how, about what, since when
                outcome=outcome,
                completed_at=time.time(),
                ready_after_s=ready_after,
                worker=self.worker,
            )
        )

    def handoff_gap(self, note: HandoffNote, gap: float) -> None:
        self.writer.submit(HandoffGap(self.session_id, note.handoff_id, gap))

    def _on_item(self, event: ConversationItemAddedEvent) -> None:
        item = event.item
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        text = item.text_content or ""
        if item.role == "user":
            speaker = "student"
        else:
            # a handoff line is spoken by the incoming tutor's session in the outgoing voice
            speaker = self.userdata.spoken_as.pop(text, None) or self.userdata.active_tutor or ""
        self.writer.submit(
            TurnRecord(
                session_id=self.session_id,
                item_id=item.id,
                speaker=speaker,
                text=text,
                at=item.created_at,
                worker=self.worker,
                synthetic=is_synthetic_turn(item),
                interrupted=item.interrupted,
            )
        )

    def _on_close(self, event: CloseEvent) -> None:
        if self.left_without_ending or self._ended:
            return
        self._ended = True
        self.writer.submit(SessionEnded(self.session_id, event.reason.value))
