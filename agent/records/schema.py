"""The records tables (SQLAlchemy 2 declarative); Alembic migrations create and evolve them.

Times are naive UTC. Every row a writer may send twice (a batch retried after a commit
whose answer was lost) has a natural key with a unique constraint, so a retry is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def session_fk() -> ForeignKey:
    return ForeignKey("sessions.id", ondelete="CASCADE")


# the columns many tables share (SQLAlchemy gives each table its own copy)
RowId = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
SessionKey = Annotated[str, mapped_column(String(64), session_fk(), index=True)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SessionRow(Base):
    """One student's visit, across every worker that served it."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    student: Mapped[str] = mapped_column(String(128), default="", index=True)
    room: Mapped[str] = mapped_column(String(128), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(64))
    # the last time a job continued it (a student back after a reload or a lost worker)
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime)


class TurnRow(Base):
    """Something the student or a tutor said (or a question we passed on: `synthetic`)."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("session_id", "item_id"),
        Index("ix_turns_session_at", "session_id", "at"),
    )

    id: Mapped[RowId]
    session_id: Mapped[str] = mapped_column(String(64), session_fk())
    item_id: Mapped[str] = mapped_column(String(64))  # the chat item's id in its session
    at: Mapped[datetime] = mapped_column(DateTime)
    speaker: Mapped[str] = mapped_column(String(32))  # "student" or the tutor kind
    worker: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)


class SessionRecord:
    """A row recorded under a session (with an id of the database's own)."""

    id: Mapped[RowId]
    session_id: Mapped[SessionKey]


class HandoffRow(SessionRecord, Base):
    """A tutor handing the student to another, in-session or across workers."""

    __tablename__ = "handoffs"
    __table_args__ = (UniqueConstraint("session_id", "handoff_id"),)

    handoff_id: Mapped[str] = mapped_column(String(64))
    from_tutor: Mapped[str] = mapped_column(String(32))
    to_tutor: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16))  # "in_session" or "cross_worker"
    outcome: Mapped[str] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(64), default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    ready_after_s: Mapped[float | None] = mapped_column(Float)
    silence_gap_s: Mapped[float | None] = mapped_column(Float)


class FlagRow(SessionRecord, Base):
    """A moderation verdict that flagged a turn (written by the safety layer)."""

    __tablename__ = "flags"
    __table_args__ = (UniqueConstraint("session_id", "flag_id"),)

    flag_id: Mapped[str] = mapped_column(String(64))
    turn_item_id: Mapped[str | None] = mapped_column(String(64))
    speaker: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str] = mapped_column(String(16))  # "concern" or "urgent"
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    action: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime)


class AlertRow(Base):
    """An alert to an adult: the outbox its delivery reads and updates."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the idempotency key
    session_id: Mapped[SessionKey]
    flag_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))  # "teacher", "safeguarding", ...
    tier: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)


class TeacherRow(Base):
    """An adult who signs in to the teacher pages (`python -m agent teachers add`)."""

    __tablename__ = "teachers"
    # ids are never reused (SQLite would hand a removed teacher's id to the next one, and
    # with it any cookie still naming that id)
    __table_args__ = (
        UniqueConstraint("username", name="uq_teachers_username"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[RowId]
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="teacher")  # or "safeguarding"
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # a sign-in cookie is good only while it names the account's current version: signing
    # out, a new password or a new role moves it on, ending every earlier sign-in
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class ClassRow(Base):
    """A class code a teacher gave out; students join with it while it is open."""

    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("code", name="uq_classes_code"),)

    id: Mapped[RowId]
    code: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    # RESTRICT: a teacher's removal hands the classes on first (`remove_teacher`)
    teacher_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("teachers.id", ondelete="RESTRICT"), index=True
    )
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)


class VisitRow(Base):
    """A student's join from the web page: which class a session belongs to, and how
    often the orchestrator had to be dispatched before a tutor arrived.

    Written by the web service when it issues the token, before any worker has written
    the session row, so it has no foreign key to `sessions`.
    """

    __tablename__ = "visits"
    __table_args__ = (Index("ix_visits_room_identity", "room", "identity"),)

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # RESTRICT: a class's visits go only by an erasure or retention, which delete them
    # (and their sessions) themselves
    class_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("classes.id", ondelete="RESTRICT"), index=True
    )
    student_name: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(64))
    room: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # the orchestrator dispatches made for this visit (the token's own is the first), the
    # last one's time, and when the watchdog gave up (no tutor after the last)
    dispatches: Mapped[int] = mapped_column(Integer, default=1)
    last_dispatch_at: Mapped[datetime] = mapped_column(DateTime)
    gave_up_at: Mapped[datetime | None] = mapped_column(DateTime)
    # the generation of the one resume key that is valid now (each rejoin spends it and
    # hands out the next), and when the visit was ended (Leave): no key opens it again
    resume_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    # who ended it: "student" (Leave), "teacher" (the live page), "class closed"
    end_reason: Mapped[str | None] = mapped_column(String(32))


class PresenceRow(Base):
    """Who is in a visit's room now, as LiveKit's webhooks tell it: the student and each
    tutor, when they joined and (once gone) left. Written by the web service."""

    __tablename__ = "room_presence"

    room: Mapped[str] = mapped_column(String(128), primary_key=True)
    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    is_tutor: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(DateTime)
    left_at: Mapped[datetime | None] = mapped_column(DateTime)


class ErasedSessionRow(Base):
    """A session erased at a parent's request (its random id and when, nothing else): the
    database's own triggers (migration 0006) drop any later write naming it, so a worker
    still in that conversation cannot bring any of it back."""

    __tablename__ = "erased_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime)


class LiveChangeRow(Base):
    """The change feed of the teachers' live view: one row per write to a table it shows
    (sessions, turns, handoffs, flags, visits, room presence), added by the database's own
    triggers (migration 0005), read in order by the web service and pruned after minutes.
    It names the session only."""

    __tablename__ = "live_changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[RowId]
    session_id: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(DateTime, index=True)


class TranscriptViewRow(Base):
    """An adult opened a session's transcript (who, which, when): the access log."""

    __tablename__ = "transcript_views"

    id: Mapped[RowId]
    teacher_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("teachers.id", ondelete="SET NULL"), index=True
    )
    username: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class AuditRow(Base):
    """Something an operator did to children's data (an export, an erasure): who, when,
    what, and how many rows of each table. It keeps no child's words."""

    __tablename__ = "audit_log"

    id: Mapped[RowId]
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # "export", "delete", "purge"
    target: Mapped[str] = mapped_column(String(256))  # e.g. "session S", "class ABC234"
    reason: Mapped[str] = mapped_column(String(256), default="")
    rows: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
