"""A child's data on request: export everything about one student, erase one session, one
student or one class, and write each of these (and every retention purge) to the audit log.

A student is named the way a school knows them: a class code and the first name typed on
the page (any case). Every table that holds a child's data is covered: visits, sessions,
turns, handoffs, flags, alerts and the adults' transcript views.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.records.deletion import SESSION_KEYED, audit, delete_sessions
from agent.records.schema import (
    AuditRow,
    ClassRow,
    ErasedSessionRow,
    SessionRow,
    TranscriptViewRow,
    VisitRow,
)
from agent.records.store import RecordsStore, iso, utc_now

logger = logging.getLogger("tutor.records")

STUDENT_EXPORT_FORMAT = "voice-tutor.student.v1"


class NotFound(LookupError):
    """Nothing matches the scope; the message is one line for the operator."""


@dataclass(frozen=True)
class Scope:
    """Whose data: one session (`session_id`), one student (`class_code` and `student`)
    or a whole class (`class_code` alone)."""

    session_id: str | None = None
    class_code: str | None = None
    student: str | None = None
    # which of the children who joined with that name (their identities): needed when the
    # name matches more than one
    identities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.session_id is None) == (self.class_code is None):
            raise ValueError("name either a session, or a class (with or without a student)")
        if self.session_id is not None and self.student is not None:
            raise ValueError("a student is named by their class code, not a session")
        if self.identities and self.student is None:
            raise ValueError("--identity picks among the children with one name: add --student")
        if self.class_code is not None:  # as a child types it: any case, spaces, dashes
            code = "".join(self.class_code.split()).replace("-", "").upper()
            object.__setattr__(self, "class_code", code)

    def describe(self) -> str:
        """For the operator's terminal."""
        if self.student is not None:
            return f"student {self.student!r} of class {self.class_code}"
        return self.audit_target()

    def audit_target(self) -> str:
        """For the audit log, which outlives an erasure: no child's name in it."""
        if self.session_id is not None:
            return f"session {self.session_id}"
        if self.student is not None:
            return f"a student of class {self.class_code}"
        return f"class {self.class_code}"


@dataclass(frozen=True)
class Found:
    """What a scope covers: the sessions, the visits, and the class (a whole class)."""

    session_ids: list[str]
    class_id: int | None


def same_name(a: str, b: str) -> bool:
    """A first name as typed on different days: case, accents' encoding and spacing aside."""

    def key(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).casefold().split())

    return key(a) == key(b)


async def find(conn: AsyncConnection, scope: Scope) -> Found:
    """The sessions `scope` covers (raises `NotFound` when it covers nothing)."""
    if scope.session_id is not None:
        known = (
            await conn.execute(select(SessionRow.id).where(SessionRow.id == scope.session_id))
        ).first() or (
            await conn.execute(
                select(VisitRow.session_id).where(VisitRow.session_id == scope.session_id)
            )
        ).first()
        if known is None:
            raise NotFound(f"no session {scope.session_id!r}")
        return Found([scope.session_id], None)
    code = scope.class_code or ""
    class_id = (await conn.execute(select(ClassRow.id).where(ClassRow.code == code))).scalar()
    if class_id is None:
        raise NotFound(f"no class with the code {code!r}")
    visits = (
        await conn.execute(
            select(
                VisitRow.session_id, VisitRow.student_name, VisitRow.identity, VisitRow.created_at
            )
            .where(VisitRow.class_id == class_id)
            .order_by(VisitRow.created_at)
        )
    ).all()
    if scope.student is None:
        return Found([v.session_id for v in visits], class_id)
    named = [v for v in visits if same_name(v.student_name, scope.student)]
    if not named:
        raise NotFound(f"no student named {scope.student!r} in class {code}")
    if scope.identities:
        mine = [v.session_id for v in named if v.identity in scope.identities]
        if not mine:
            raise NotFound(f"none of those identities joined class {code} as {scope.student!r}")
        return Found(mine, None)
    if len({v.identity for v in named}) > 1:
        raise Ambiguous(scope, named)
    return Found([v.session_id for v in named], None)


class Ambiguous(LookupError):
    """A name that more than one child joined with (or one child on several joins): the
    school must say which, so that no other child's data is exported or erased with them."""

    def __init__(self, scope: Scope, visits: Sequence[Any]) -> None:
        lines = [
            f"{len({v.identity for v in visits})} identities joined class {scope.class_code} "
            f"as {scope.student!r}; name one or more with --identity (or a --session):"
        ]
        lines += [
            f"  --identity {v.identity}   joined as {v.student_name!r} at "
            f"{v.created_at:%Y-%m-%d %H:%M} UTC, session {v.session_id}"
            for v in visits
        ]
        super().__init__("\n".join(lines))


async def count(conn: AsyncConnection, found: Found) -> dict[str, int]:
    """How many rows of each table an erasure of `found` deletes."""
    ids = found.session_ids
    counts: dict[str, int] = {}
    for row, column in SESSION_KEYED:
        counts[row.__tablename__] = (
            await conn.execute(select(func.count()).select_from(row).where(column.in_(ids)))
        ).scalar() or 0
    if found.class_id is not None:
        counts[ClassRow.__tablename__] = 1
    return counts


async def preview(store: RecordsStore, scope: Scope) -> dict[str, int]:
    """What `erase(scope)` would delete, per table, deleting nothing."""
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        return await count(conn, await find(conn, scope))


async def erase(
    store: RecordsStore, scope: Scope, *, actor: str, reason: str = ""
) -> dict[str, int]:
    """Delete everything `scope` covers (a whole class: the class too), with its audit
    entry, in one transaction. Returns the rows deleted per table."""
    await store.ensure_schema()

    async def work(conn: AsyncConnection) -> dict[str, int]:
        found = await find(conn, scope)
        names = await names_of(conn, found.session_ids)
        deleted = await delete_sessions(conn, found.session_ids)
        # a conversation still going on writes on: the database drops what it writes
        await keep_erased(conn, found.session_ids)
        if found.class_id is not None:
            await conn.execute(delete(VisitRow).where(VisitRow.class_id == found.class_id))
            await conn.execute(delete(ClassRow).where(ClassRow.id == found.class_id))
            deleted[ClassRow.__tablename__] = 1
        # the audit log outlives the erasure: no reason written in it names the child
        await _audit(conn, "delete", scope, deleted, actor=actor, reason=without(reason, names))
        await scrub_reasons(conn, names)
        return deleted

    deleted = await store.write_waiting(work)
    logger.info("records erased", extra={"rows": deleted, "actor": actor})
    return deleted


async def rooms_of(store: RecordsStore, scope: Scope) -> list[str]:
    """The LiveKit rooms of the visits `scope` covers (to close before erasing them)."""
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        found = await find(conn, scope)
        query = select(VisitRow.room).where(VisitRow.session_id.in_(found.session_ids))
        return sorted({room for (room,) in (await conn.execute(query)).all()})


async def keep_erased(conn: AsyncConnection, session_ids: Sequence[str]) -> None:
    """Tombstones for `session_ids`: no later write can bring them back (migration 0006)."""
    now = utc_now()
    for session_id in session_ids:
        exists = select(ErasedSessionRow.session_id).where(
            ErasedSessionRow.session_id == session_id
        )
        if (await conn.execute(exists)).first() is None:
            await conn.execute(
                insert(ErasedSessionRow).values(session_id=session_id, erased_at=now)
            )


NAME_REMOVED = "[a child's name]"


async def names_of(conn: AsyncConnection, session_ids: Sequence[str]) -> set[str]:
    """The first names the children of these sessions joined with."""
    if not session_ids:
        return set()
    query = select(VisitRow.student_name).where(VisitRow.session_id.in_(list(session_ids)))
    return {name for name in (await conn.execute(query)).scalars() if name}


def without(text: str, names: set[str]) -> str:
    """`text` with each of `names` (as a word, in any case) replaced."""
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", NAME_REMOVED, text, flags=re.I)
    return text


async def scrub_reasons(conn: AsyncConnection, names: set[str]) -> None:
    """Take the erased children's names out of the reasons earlier audit entries give (an
    export "for Maya's parents" must not keep Maya's name past her erasure)."""
    if not names:
        return
    for entry_id, reason in (await conn.execute(select(AuditRow.id, AuditRow.reason))).all():
        cleaned = without(reason or "", names)
        if cleaned != reason:
            await conn.execute(
                update(AuditRow).where(AuditRow.id == entry_id).values(reason=cleaned)
            )


async def export_student(
    store: RecordsStore, scope: Scope, *, actor: str, reason: str = ""
) -> dict[str, Any]:
    """Everything held about one student (or one session): their visits, each session's
    whole record, and which adults opened which transcript. The export is audited."""
    if scope.class_code is not None and scope.student is None:
        raise ValueError("export one student (class code and name) or one session")
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        found = await find(conn, scope)
        ids = found.session_ids
        visits = (
            await conn.execute(
                select(VisitRow, ClassRow.code)
                .join(ClassRow, ClassRow.id == VisitRow.class_id)
                .where(VisitRow.session_id.in_(ids))
                .order_by(VisitRow.created_at)
            )
        ).all()
        views = (
            await conn.execute(
                select(TranscriptViewRow)
                .where(TranscriptViewRow.session_id.in_(ids))
                .order_by(TranscriptViewRow.at, TranscriptViewRow.id)
            )
        ).all()
    sessions = [doc for session_id in ids if (doc := await store.export(session_id))]
    document = {
        "format": STUDENT_EXPORT_FORMAT,
        "scope": scope.describe(),
        "exported_at": iso(utc_now()),
        "visits": [
            {
                "session_id": v.session_id,
                "class_code": v.code,
                "student_name": v.student_name,
                "identity": v.identity,
                "joined_at": iso(v.created_at),
                "tutor_dispatches": v.dispatches,
                "no_tutor_came": v.gave_up_at is not None,
            }
            for v in visits
        ],
        "sessions": sessions,
        "transcript_views": [
            {"session_id": v.session_id, "by": v.username, "at": iso(v.at)} for v in views
        ],
    }
    rows = {
        "visits": len(document["visits"]),
        "sessions": len(sessions),
        "turns": sum(len(s["turns"]) for s in sessions),
        "transcript_views": len(document["transcript_views"]),
    }
    await note_export(store, scope, rows, actor=actor, reason=reason)
    return document


async def note_export(
    store: RecordsStore, scope: Scope, rows: dict[str, int], *, actor: str, reason: str = ""
) -> None:
    """Write an export of `scope` (`rows` per table handed out) to the audit log."""
    await _note(store, "export", scope, rows, actor=actor, reason=reason)


async def note_view(
    store: RecordsStore, scope: Scope, rows: dict[str, int], *, actor: str, reason: str = ""
) -> None:
    """Write a reading of `scope` at the terminal (`records show`) to the audit log."""
    await _note(store, "view", scope, rows, actor=actor, reason=reason)


async def _note(
    store: RecordsStore, action: str, scope: Scope, rows: dict[str, int], **who: str
) -> None:
    await store.write_waiting(lambda conn: _audit(conn, action, scope, rows, **who))


async def _audit(
    conn: AsyncConnection,
    action: str,
    scope: Scope,
    rows: dict[str, int],
    *,
    actor: str,
    reason: str,
) -> None:
    await audit(
        conn,
        at=utc_now(),
        actor=actor,
        action=action,
        target=scope.audit_target(),
        rows=rows,
        reason=reason,
    )


async def audit_log(store: RecordsStore, *, limit: int = 50) -> list[AuditRow]:
    """The newest entries first."""
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        query = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        return list((await conn.execute(query)).all())  # type: ignore[arg-type]
