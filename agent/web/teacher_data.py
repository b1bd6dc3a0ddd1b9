"""What a signed-in adult may see: their classes' sessions, transcripts, flags and alerts.

A teacher sees the sessions started from their own class codes; a `safeguarding` account
also sees every session of the school with an urgent flag. Opening a transcript is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from agent.config.roster import RosterError, default_roster
from agent.records.schema import (
    AlertRow,
    ClassRow,
    FlagRow,
    SessionRow,
    TranscriptViewRow,
    VisitRow,
)
from agent.records.store import RecordsStore, counted, from_row, subjects_visited, utc_now
from agent.web.accounts import Teacher

TIER_RANK = {"urgent": 0, "concern": 1}


def when(value: datetime | str | None) -> str:
    """A stored time (naive UTC, or the export's ISO text) as the pages show it."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.removesuffix("Z"))
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def local_time(value: datetime | str | None) -> Markup:
    """A stored time for a teacher's page: UTC in the markup, shown in the browser's own
    time zone by `static/teacher.js` (UTC as written if scripts do not run)."""
    if value is None or value == "":
        return Markup("—")
    if isinstance(value, str):
        value = datetime.fromisoformat(value.removesuffix("Z"))
    stamp = value.isoformat(timespec="seconds") + "Z"
    return Markup('<time datetime="{}">{}</time>').format(stamp, when(value))


def tutor_title(kind: str) -> str:
    """How the pages name a tutor kind: its title in the roster (`TUTOR_ROSTER`), else the
    kind itself (a tutor since removed from the roster)."""
    try:
        title = default_roster().tutors[kind].title
    except (RosterError, KeyError):
        title = kind.replace("_", " ")
    return title[:1].upper() + title[1:]


@dataclass(frozen=True)
class SessionView:
    session_id: str
    student: str
    class_code: str
    class_name: str
    started_at: datetime
    ended_at: datetime | None
    tutor_joined: bool
    gave_up: bool  # no tutor came after every dispatch allowed
    subjects: list[str]
    flags: int
    urgent_flags: int

    @property
    def length_s(self) -> float | None:
        if self.ended_at is None or not self.tutor_joined:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class FlagView:
    session_id: str
    student: str
    class_code: str
    tier: str
    speaker: str
    categories: list[str]
    action: str
    at: datetime
    alerts: list[dict[str, Any]]


def _urgent_session() -> ColumnElement[bool]:
    flag = aliased(FlagRow)  # its own FROM: the outer query may select flags too
    return exists().where(flag.session_id == VisitRow.session_id, flag.tier == "urgent")


def _visible(teacher: Teacher) -> ColumnElement[bool]:
    """The visits (and so sessions) this adult may see."""
    own = ClassRow.teacher_id == teacher.id
    return or_(own, _urgent_session()) if teacher.is_safeguarding else own


def _in_visible_visits(query: Any, session_id: Any, teacher: Teacher) -> Any:
    """`query` joined to the visit and class of `session_id`, limited to what `teacher`
    may see."""
    return (
        query.join(VisitRow, VisitRow.session_id == session_id)
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .where(_visible(teacher))
    )


def _visits() -> Any:
    return select(VisitRow, ClassRow.code, ClassRow.name).join(
        ClassRow, ClassRow.id == VisitRow.class_id
    )


async def can_view(store: RecordsStore, teacher: Teacher, session_id: str) -> bool:
    await store.ensure_schema()
    query = (
        select(func.count())
        .select_from(VisitRow)
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .where(VisitRow.session_id == session_id, _visible(teacher))
    )
    async with store.engine.connect() as conn:
        return bool((await conn.execute(query)).scalar())


async def sessions_for(
    store: RecordsStore, teacher: Teacher, limit: int = 200
) -> list[SessionView]:
    """Newest first: every join from a visible class, with or without a tutor yet."""
    await store.ensure_schema()
    flags = counted(FlagRow, VisitRow.session_id)
    urgent = counted(FlagRow, VisitRow.session_id, FlagRow.tier == "urgent")
    query = (
        select(
            VisitRow.session_id,
            VisitRow.student_name,
            VisitRow.created_at,
            VisitRow.gave_up_at,
            ClassRow.code,
            ClassRow.name,
            SessionRow.started_at,
            SessionRow.ended_at,
            flags.label("flags"),
            urgent.label("urgent"),
        )
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .outerjoin(SessionRow, SessionRow.id == VisitRow.session_id)
        .where(_visible(teacher))
        .order_by(VisitRow.created_at.desc())
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        subjects = await subjects_visited(conn, [row.session_id for row in rows])
    return [
        SessionView(
            session_id=row.session_id,
            student=row.student_name,
            class_code=row.code,
            class_name=row.name,
            started_at=row.started_at or row.created_at,
            ended_at=row.ended_at,
            tutor_joined=row.started_at is not None,
            gave_up=row.gave_up_at is not None and row.started_at is None,
            subjects=[tutor_title(kind) for kind in subjects.get(row.session_id, [])],
            flags=row.flags,
            urgent_flags=row.urgent,
        )
        for row in rows
    ]


async def flags_for(store: RecordsStore, teacher: Teacher, limit: int = 200) -> list[FlagView]:
    """Flagged turns of visible sessions, the most urgent first, then the newest."""
    rows = await _newest_visible(store, teacher, FlagRow, FlagRow.at, limit)
    async with store.engine.connect() as conn:
        alerts = await _alerts_by_flag(conn, [(row.session_id, row.flag_id) for row in rows])
    views = [
        from_row(
            FlagView,
            row,
            student=row.student_name,
            class_code=row.code,
            categories=list(row.categories or []),
            alerts=alerts.get((row.session_id, row.flag_id), []),
        )
        for row in rows
    ]
    # stable sort: newest first within each tier
    return sorted(views, key=lambda view: TIER_RANK.get(view.tier, len(TIER_RANK)))


async def _newest_visible(
    store: RecordsStore, teacher: Teacher, row: type[Any], at: Any, limit: int
) -> list[Any]:
    """`row`s of visible sessions with the student's first name and class code, newest
    (`at`) first."""
    await store.ensure_schema()
    rows = select(row, VisitRow.student_name, ClassRow.code)
    query = _in_visible_visits(rows, row.session_id, teacher).order_by(at.desc()).limit(limit)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def _alerts_by_flag(
    conn: Any, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    if not keys:
        return {}
    query = (
        select(AlertRow)
        .where(or_(*(and_(AlertRow.session_id == s, AlertRow.flag_id == f) for s, f in keys)))
        .order_by(AlertRow.created_at)
    )
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for alert in (await conn.execute(query)).all():
        found.setdefault((alert.session_id, alert.flag_id), []).append(_alert(alert))
    return found


def _alert(alert: Any) -> dict[str, Any]:
    return {
        "channel": alert.channel,
        "tier": alert.tier,
        "status": alert.status,
        "attempts": alert.attempts,
        "created_at": alert.created_at,
        "delivered_at": alert.delivered_at,
    }


async def alerts_for(store: RecordsStore, teacher: Teacher, limit: int = 200) -> list[dict]:
    """Alerts raised in visible sessions, newest first, with their delivery status."""
    rows = await _newest_visible(store, teacher, AlertRow, AlertRow.created_at, limit)
    return [
        {
            **_alert(row),
            "session_id": row.session_id,
            "student": row.student_name,
            "class_code": row.code,
        }
        for row in rows
    ]


async def transcript(store: RecordsStore, teacher: Teacher, session_id: str) -> dict | None:
    """The session for this adult (None if they may not see it), logging the view."""
    if not await can_view(store, teacher, session_id):
        return None
    async with store.engine.begin() as conn:
        visit = (await conn.execute(_visits().where(VisitRow.session_id == session_id))).first()
        await conn.execute(
            TranscriptViewRow.__table__.insert().values(
                teacher_id=teacher.id,
                username=teacher.username,
                session_id=session_id,
                at=utc_now(),
            )
        )
    exported = await store.export(session_id) or {
        "session": {"id": session_id, "started_at": None, "ended_at": None},
        "turns": [],
        "handoffs": [],
        "flags": [],
        "alerts": [],
    }
    assert visit is not None  # can_view found it
    exported["student"] = visit.student_name
    exported["class"] = {"code": visit.code, "name": visit.name}
    _attribute_turns(exported)
    return exported


def _attribute_turns(exported: dict[str, Any]) -> None:
    """Give each turn the tutor the student was talking with at that moment."""
    events: list[tuple[str, int, dict[str, Any]]] = [
        (turn["at"] or "", 1, turn) for turn in exported["turns"]
    ]
    events += [
        (h["completed_at"] or h["requested_at"] or "", 0, h)
        for h in exported["handoffs"]
        if h["outcome"] in ("completed", "handed_over")
    ]
    current = "orchestrator"
    flagged = {f["turn_item_id"]: f for f in exported["flags"] if f.get("turn_item_id")}
    for _, kind, event in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            current = event["to"]
            continue
        if event["role"] == "tutor":
            current = event["speaker"]
        event["tutor"] = tutor_title(current)
    for turn in exported["turns"]:
        turn["flag"] = flagged.get(turn.get("item_id"))


async def views_of(store: RecordsStore, session_id: str) -> list[tuple[str, datetime]]:
    """Who opened this session's transcript, and when (oldest first)."""
    await store.ensure_schema()
    query = (
        select(TranscriptViewRow.username, TranscriptViewRow.at)
        .where(TranscriptViewRow.session_id == session_id)
        .order_by(TranscriptViewRow.at, TranscriptViewRow.id)
    )
    async with store.engine.connect() as conn:
        return [(row.username, row.at) for row in (await conn.execute(query)).all()]
