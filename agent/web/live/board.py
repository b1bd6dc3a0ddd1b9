"""What a class looks like now, from the records: one row per student in it (first name,
when they joined, the tutor with the floor, subjects, turns, whether a tutor is there), and
the flags raised, newest first. Flags carry their tier and categories, never the words.

Who is in the room comes from LiveKit's webhooks (`presence`). Where none have arrived (a
deployment without the webhook), the session's own record stands in: a session that has
started and not ended has its tutor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.config.roster import ORCHESTRATOR
from agent.records.schema import (
    ClassRow,
    FlagRow,
    HandoffRow,
    PresenceRow,
    SessionRow,
    TurnRow,
    VisitRow,
)
from agent.records.store import RecordsStore, subjects_visited, utc_now
from agent.web.accounts import Teacher
from agent.web.teacher_data import tutor_title

# a visit that has not ended is on the board for at most this long
LONGEST_VISIT = timedelta(hours=6)
# a token taken whose student never reached the room is shown as joining this long
JOIN_WINDOW = timedelta(minutes=2)
HANDED = ("completed", "handed_over")

STATUS_TEXT = {
    "joining": "joining",
    "talking": "talking",
    "busy": "no tutor: every tutor is busy",
    "reconnecting": "reconnecting after a lost connection",
}


def iso(value: datetime) -> str:
    """A stored time (naive UTC) as ISO 8601 with its zone: the page shows it locally."""
    return value.isoformat(timespec="seconds") + "Z"


@dataclass(frozen=True)
class StudentNow:
    """One student in the class now."""

    session_id: str
    student: str
    joined_at: str
    tutor: str  # the title of the tutor with the floor
    subjects: list[str]
    turns: int  # what the student said
    status: str  # a key of STATUS_TEXT
    status_text: str
    flags: int
    urgent: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FlagNow:
    """A flag as the live pages show it: who, where, how serious, about what."""

    id: int  # the row's id: the order flags were raised in
    session_id: str
    student: str
    class_code: str
    tier: str
    categories: list[str]
    speaker: str
    at: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def class_id_of(store: RecordsStore, teacher: Teacher, code: str) -> int | None:
    """The id of this teacher's own class with `code` (None: no such class of theirs)."""
    await store.ensure_schema()
    query = select(ClassRow.id).where(ClassRow.code == code, ClassRow.teacher_id == teacher.id)
    async with store.engine.connect() as conn:
        return (await conn.execute(query)).scalar()


async def class_board(
    store: RecordsStore, class_id: int, *, resume_window: timedelta, now: datetime | None = None
) -> list[StudentNow]:
    """The students in the class now, those who joined first first."""
    now = now or utc_now()
    query = (
        select(
            VisitRow.__table__,
            SessionRow.started_at.label("session_started"),
            SessionRow.ended_at.label("session_ended"),
        )
        .outerjoin(SessionRow, SessionRow.id == VisitRow.session_id)
        .where(
            VisitRow.class_id == class_id,
            VisitRow.ended_at.is_(None),
            VisitRow.created_at > now - LONGEST_VISIT,
        )
        .order_by(VisitRow.created_at)
    )
    async with store.engine.connect() as conn:
        visits = (await conn.execute(query)).all()
        ids = [visit.session_id for visit in visits]
        presence = await _presence(conn, ids)
        turns = await _counts(conn, TurnRow, ids, TurnRow.speaker == "student")
        flags = await _counts(conn, FlagRow, ids)
        urgent = await _counts(conn, FlagRow, ids, FlagRow.tier == "urgent")
        floor = await _floors(conn, ids)
        subjects = await subjects_visited(conn, ids)
    board = []
    for row in visits:
        status = _status(
            row,
            presence.get(row.session_id, []),
            session_started=row.session_started,
            session_ended=row.session_ended,
            resume_window=resume_window,
            now=now,
        )
        if status is None:
            continue
        board.append(
            StudentNow(
                session_id=row.session_id,
                student=row.student_name,
                joined_at=iso(row.created_at),
                tutor=tutor_title(floor.get(row.session_id, ORCHESTRATOR)),
                subjects=[tutor_title(kind) for kind in subjects.get(row.session_id, [])],
                turns=turns.get(row.session_id, 0),
                status=status,
                status_text=STATUS_TEXT[status],
                flags=flags.get(row.session_id, 0),
                urgent=urgent.get(row.session_id, 0) > 0,
            )
        )
    return board


def _status(
    visit: Any,
    presence: list[Any],
    *,
    session_started: datetime | None,
    session_ended: datetime | None,
    resume_window: timedelta,
    now: datetime,
) -> str | None:
    """The student's state now, or None if they are not in the class any more."""
    student = next((p for p in presence if p.identity == visit.identity), None)
    session_live = session_started is not None and session_ended is None
    if student is not None:
        if student.left_at is not None:
            # back within the resume window (a lost connection, a reload), else gone
            return "reconnecting" if now - student.left_at < resume_window else None
        tutor_here = any(p.is_tutor and p.left_at is None for p in presence)
    elif session_ended is not None and not session_live:
        # not seen in the room (no webhooks): the tutor ended the session when the student
        # had gone, and they may still come back
        return "reconnecting" if now - session_ended < resume_window else None
    elif session_live or visit.gave_up_at is not None or now - visit.created_at < JOIN_WINDOW:
        tutor_here = session_live
    else:
        return None  # took a token and never came
    if tutor_here:
        return "talking"
    return "busy" if visit.gave_up_at is not None else "joining"


async def _presence(conn: AsyncConnection, ids: list[str]) -> dict[str, list[Any]]:
    """Room presence rows (id, identity, is_tutor, joined_at, left_at) per session."""
    found: dict[str, list[Any]] = {}
    if ids:
        query = select(PresenceRow).where(PresenceRow.session_id.in_(ids))
        for row in (await conn.execute(query)).all():
            found.setdefault(row.session_id, []).append(row)
    return found


async def _counts(conn: AsyncConnection, row: Any, ids: list[str], *where: Any) -> dict[str, int]:
    if not ids:
        return {}
    query = (
        select(row.session_id, func.count())
        .where(row.session_id.in_(ids), *where)
        .group_by(row.session_id)
    )
    return {session_id: count for session_id, count in (await conn.execute(query)).all()}


async def _floors(conn: AsyncConnection, ids: list[str]) -> dict[str, str]:
    """The tutor each session was last handed to (the orchestrator until a handoff)."""
    if not ids:
        return {}
    at = func.coalesce(HandoffRow.completed_at, HandoffRow.requested_at)
    query = (
        select(HandoffRow.session_id, HandoffRow.to_tutor)
        .where(HandoffRow.session_id.in_(ids), HandoffRow.outcome.in_(HANDED))
        .order_by(at, HandoffRow.id)
    )
    return {session_id: tutor for session_id, tutor in (await conn.execute(query)).all()}


async def flags_raised(
    store: RecordsStore,
    teacher: Teacher,
    *,
    class_ids: Iterable[int] | None = None,
    after: int = 0,
    since: datetime | None = None,
    limit: int = 100,
) -> list[FlagNow]:
    """Flags this adult is shown live (in `class_ids` only, if given) raised after the flag row
    `after` and since `since`, newest first."""
    query = (
        select(FlagRow.__table__, VisitRow.student_name, ClassRow.code)
        .join(VisitRow, VisitRow.session_id == FlagRow.session_id)
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .where(_flag_visible(teacher), FlagRow.id > after)
        .order_by(FlagRow.id.desc())
        .limit(limit)
    )
    if class_ids is not None:
        query = query.where(VisitRow.class_id.in_(list(class_ids)))
    if since is not None:
        query = query.where(FlagRow.at >= since)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_flag(row) for row in rows]


def _flag_visible(teacher: Teacher) -> ColumnElement[bool]:
    """A flag of one of their own classes; for a safeguarding lead, every urgent one."""
    own = ClassRow.teacher_id == teacher.id
    return or_(own, FlagRow.tier == "urgent") if teacher.is_safeguarding else own


def _flag(row: Any) -> FlagNow:
    return FlagNow(
        id=row.id,
        session_id=row.session_id,
        student=row.student_name,
        class_code=row.code,
        tier=row.tier,
        categories=list(row.categories or []),
        speaker="student" if row.speaker == "student" else tutor_title(row.speaker),
        at=iso(row.at),
    )


async def newest_flag(store: RecordsStore) -> int:
    """The id of the newest flag row (0: none): where a page's stream of new flags starts."""
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.max(FlagRow.id)))).scalar() or 0
