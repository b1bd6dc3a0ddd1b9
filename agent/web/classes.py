"""Class codes and the student's join: an open code gives one room, one identity, one token."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.config.settings import LiveKitSettings
from agent.conversation.state import new_session_id
from agent.dispatch.token import student_token
from agent.records.schema import ClassRow, VisitRow
from agent.records.store import RecordsStore, utc_now

# no 0/O, 1/I/L: a child reads the code from a board
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
MAX_NAME = 32
# a first name: letters (any script), spaces, hyphens, apostrophes, dots
# letters that show as nothing: a name made of them looks empty, or like another child's
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019.-])*", re.UNICODE)
# long enough to join: once in, LiveKit's reconnections keep the session, and a page that
# must join again asks for a new token with its resume key
STUDENT_TOKEN_TTL = timedelta(minutes=15)


CODE_UNKNOWN = "code_unknown"  # the one join error that is a guess (rate-limited)


@dataclass
class JoinError(Exception):
    """A join the page must refuse; `message` is written for the child who typed it."""

    status: int  # the HTTP status the page gets
    code: str  # a stable reason the page can tell apart, e.g. "closed"
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class SchoolClass:
    id: int
    code: str
    name: str
    teacher_id: int
    is_open: bool
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class Join:
    token: str
    room: str
    identity: str
    session_id: str
    resume_generation: int = 0  # the generation of the visit's one valid resume key


def normalize_code(text: str) -> str:
    """What a child typed, as stored: upper case, no spaces or dashes."""
    return re.sub(r"[\s-]", "", text).upper()


def check_first_name(text: str) -> str:
    """The first name as the teacher will read it, or a `JoinError` the child can act on."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name:
        raise JoinError(400, "name_missing", "Please type your first name.")
    if len(name) > MAX_NAME:
        raise JoinError(400, "name_too_long", f"Please use at most {MAX_NAME} letters.")
    if not NAME.fullmatch(name) or INVISIBLE_LETTERS & set(name):
        raise JoinError(400, "name_invalid", "Please use only letters in your name.")
    if len(scripts_of(name)) > 1:
        # a Cyrillic letter in a Latin name (or the like) reads as another child's name
        raise JoinError(400, "name_invalid", "Please write your name in one alphabet.")
    return name


def scripts_of(name: str) -> set[str]:
    """The writing systems of a name's letters (LATIN, CYRILLIC, GREEK, ...; Japanese kana
    and kanji are written together, so they count as one)."""
    scripts = {unicodedata.name(c, "?").split(" ")[0] for c in name if c.isalpha()}
    return {"CJK" if s in ("HIRAGANA", "KATAKANA") else s for s in scripts}


def identity_for(name: str) -> str:
    """A LiveKit identity from a first name: ASCII letters, then a random suffix."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z]+", "-", ascii_name.lower()).strip("-")[:24] or "student"
    return f"{slug}-{secrets.token_hex(3)}"


def _class(row: ClassRow) -> SchoolClass:
    return SchoolClass(
        row.id, row.code, row.name, row.teacher_id, row.is_open, row.created_at, row.closed_at
    )


async def create_class(store: RecordsStore, teacher_id: int, name: str) -> SchoolClass:
    """A new open class with a fresh code (codes are never reused)."""
    name = " ".join(name.split())[:128]
    await store.ensure_schema()
    for _ in range(8):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = utc_now()
        try:
            async with store.engine.begin() as conn:
                result = await conn.execute(
                    ClassRow.__table__.insert().values(
                        code=code, name=name, teacher_id=teacher_id, is_open=True, created_at=now
                    )
                )
        except IntegrityError:
            continue  # that code exists: draw another
        return SchoolClass(result.inserted_primary_key[0], code, name, teacher_id, True, now, None)
    raise RuntimeError("could not draw an unused class code")


async def set_class_open(store: RecordsStore, teacher_id: int, code: str, *, is_open: bool) -> bool:
    """Open or close one of the teacher's own classes; False if they have no such class."""
    await store.ensure_schema()
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(ClassRow)
            .where(ClassRow.code == normalize_code(code), ClassRow.teacher_id == teacher_id)
            .values(is_open=is_open, closed_at=None if is_open else utc_now())
        )
    return result.rowcount == 1


async def end_class_visits(store: RecordsStore, teacher_id: int, code: str) -> list[str]:
    """End every visit of one of the teacher's classes that has not ended (no resume key
    opens one again, should the class be reopened); their rooms, to close."""
    now = utc_now()
    class_id = (
        select(ClassRow.id)
        .where(ClassRow.code == normalize_code(code), ClassRow.teacher_id == teacher_id)
        .scalar_subquery()
    )
    live = (VisitRow.class_id == class_id, VisitRow.ended_at.is_(None))

    async def work(conn: AsyncConnection) -> list[str]:
        rooms = list((await conn.execute(select(VisitRow.room).where(*live))).scalars())
        await conn.execute(
            update(VisitRow).where(*live).values(ended_at=now, end_reason="class closed")
        )
        return rooms

    return await store.write_waiting(work)


async def classes_of(store: RecordsStore, teacher_id: int) -> list[SchoolClass]:
    await store.ensure_schema()
    query = (
        select(ClassRow)
        .where(ClassRow.teacher_id == teacher_id)
        .order_by(ClassRow.is_open.desc(), ClassRow.created_at.desc())
    )
    async with store.engine.connect() as conn:
        return [_class(row) for row in (await conn.execute(query)).all()]  # type: ignore[arg-type]


async def visit_class_open(store: RecordsStore, session_id: str) -> bool:
    """Whether the class of the visit with this session is still open."""
    query = (
        select(ClassRow.is_open)
        .join(VisitRow, VisitRow.class_id == ClassRow.id)
        .where(VisitRow.session_id == session_id)
    )
    async with store.engine.connect() as conn:
        return bool((await conn.execute(query)).scalar())


async def open_class(store: RecordsStore, code: str) -> SchoolClass:
    """The open class with this code, or a `JoinError` the child can act on."""
    code = normalize_code(code)
    if not code:
        raise JoinError(400, "code_missing", "Please type the class code your teacher gave you.")
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(ClassRow).where(ClassRow.code == code))).first()
    if row is None:
        raise JoinError(
            404, CODE_UNKNOWN, "We don't know that class code. Please check it with your teacher."
        )
    if not row.is_open:
        raise JoinError(
            403, "class_closed", "This class is closed right now. Please ask your teacher."
        )
    return _class(row)  # type: ignore[arg-type]


async def join_class(
    store: RecordsStore, settings: LiveKitSettings, code: str, first_name: str
) -> Join:
    """Admit a student to an open class: their own room, a token that brings the
    orchestrator, and a visit row that ties the session to the class."""
    name = check_first_name(first_name)
    school_class = await open_class(store, code)
    identity = identity_for(name)
    room = f"{school_class.code.lower()}-{secrets.token_hex(4)}"
    session_id = new_session_id()
    token = student_token(
        settings,
        room=room,
        identity=identity,
        name=name,
        ttl=STUDENT_TOKEN_TTL,
        session_id=session_id,
    )
    now = utc_now()
    visit = VisitRow.__table__.insert().values(
        session_id=session_id,
        class_id=school_class.id,
        student_name=name,
        identity=identity,
        room=room,
        created_at=now,
        dispatches=1,
        last_dispatch_at=now,
    )
    await store.write_waiting(lambda conn: conn.execute(visit))
    return Join(token=token, room=room, identity=identity, session_id=session_id)
