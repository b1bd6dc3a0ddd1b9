"""A conversation that continues: a job whose dispatch names a session the records already
hold (the student reloaded the page, came back after a dropped connection, or their tutor's
worker was lost) picks it up where it stopped. Its chat context is the conversation so far,
read from the records and bounded as a handover carries it; the tutor that had the floor
comes back if this worker hosts it (a specialist mid-topic), else the worker's own; and it
says one short welcome back instead of the new student's greeting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from livekit.agents import llm
from sqlalchemy import select

from agent.conversation.state import TutorKind
from agent.handover.protocol import Transfer
from agent.records.schema import ErasedSessionRow, TurnRow, VisitRow
from agent.records.store import RecordsStore
from agent.safety.lines import replaced_a_reply

logger = logging.getLogger("tutor.resume")
T = TypeVar("T")

READ_TIMEOUT = 3.0  # the student waits for this: past it, the job starts afresh


@dataclass(frozen=True)
class Resumption:
    """What the records say about the session a job continues."""

    conversation: Transfer  # (role, text) turns, oldest first, within a handover's bound
    last_tutor: TutorKind | None  # who spoke last (had the floor)

    def to_chat_ctx(self) -> llm.ChatContext:
        return self.conversation.to_chat_ctx()

    def tutor(self, default: TutorKind, hosted_here: Container[TutorKind]) -> TutorKind:
        """The tutor that had the floor, if this worker hosts it; else `default`."""
        if self.last_tutor is not None and self.last_tutor in hosted_here:
            return self.last_tutor
        return default


async def _read_in_time(
    reading: Coroutine[Any, Any, T], timeout: float, what: str, session_id: str
) -> T | None:
    """`reading`'s answer, or None (with a warning) if the records cannot give it in time."""
    try:
        async with asyncio.timeout(timeout):
            return await reading
    except Exception as exc:
        logger.warning(
            "cannot read %s: %s", what, type(exc).__name__, extra={"session_id": session_id}
        )
        return None


async def session_closed(
    store: RecordsStore, session_id: str, *, timeout: float = READ_TIMEOUT
) -> bool:
    """Whether the session must not continue: its visit has ended (the student's Leave, the
    teacher, the class closed) or the session was erased. A token made before still joins
    the room and brings a tutor, which must leave. A session with no visit (a developer's
    token) has none to end. Records that cannot be read in time count as open: the web
    service already refuses an ended visit's keys, so this is the second line, and a
    silent room the worse failure."""
    ended = select(VisitRow.ended_at).where(
        VisitRow.session_id == session_id, VisitRow.ended_at.is_not(None)
    )
    erased = select(ErasedSessionRow.session_id).where(ErasedSessionRow.session_id == session_id)

    async def read() -> bool:
        await store.ensure_schema()
        async with store.engine.connect() as conn:
            return any([(await conn.execute(q)).first() for q in (ended, erased)])

    closed = await _read_in_time(read(), timeout, "whether the session may continue", session_id)
    return bool(closed)


async def find_resumption(
    store: RecordsStore, session_id: str, *, timeout: float = READ_TIMEOUT
) -> Resumption | None:
    """The session's conversation so far, or None if it has no turn yet (a new student) or
    the records cannot be read in time (then the job starts afresh: a greeting heard twice
    is better than a silent room)."""

    async def read() -> tuple[list[TurnRow], set[str]]:
        return await store.turns(session_id), await store.flagged_turns(session_id)

    found = await _read_in_time(read(), timeout, "the session's records to resume it", session_id)
    if found is None:
        return None
    turns, flagged = found
    if not turns:
        return None
    history = llm.ChatContext.empty()
    last_tutor: TutorKind | None = None
    for number, turn in enumerate(turns):
        if turn.synthetic:  # a question we passed on: the student's own words are there
            continue
        if turn.speaker == "student" and (
            turn.item_id in flagged or _withheld(turns[number + 1 : number + 2])
        ):
            # moderation took it out of the conversation: it does not come back with it
            continue
        role = "user" if turn.speaker == "student" else "assistant"
        if role == "assistant":
            last_tutor = turn.speaker or last_tutor
        if turn.text:
            history.add_message(role=role, content=turn.text)
    return Resumption(Transfer.from_history("resume", history), last_tutor)


def _withheld(next_turns: Sequence[TurnRow]) -> bool:
    """Whether the student's turn was answered with a fixed line instead of a reply (it was
    flagged, or could not be checked): the tutor's model never saw it, nor will it now."""
    return (
        bool(next_turns)
        and next_turns[0].speaker != "student"
        and replaced_a_reply(next_turns[0].text or "")
    )
