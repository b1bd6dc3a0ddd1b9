"""Teacher accounts: who may sign in, with which role, and checking their passwords."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from agent.records.schema import ClassRow, TeacherRow
from agent.records.store import RecordsStore, utc_now

Role = Literal["teacher", "safeguarding"]
ROLES: tuple[Role, ...] = ("teacher", "safeguarding")
USERNAME = re.compile(r"[a-z0-9][a-z0-9_.@-]{1,63}")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# verified against when the username is unknown, so both cases take the same time
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """Bad input for an account; the message is one line for the operator."""


@dataclass(frozen=True)
class Teacher:
    id: int
    username: str
    display_name: str
    role: Role
    # what a sign-in cookie must carry to stay good (`end_sign_ins` moves it on)
    session_version: int = 1

    @property
    def is_safeguarding(self) -> bool:
        return self.role == "safeguarding"


def _teacher(row: TeacherRow) -> Teacher:
    return Teacher(
        row.id,
        row.username,
        row.display_name,
        row.role,  # type: ignore[arg-type]
        row.session_version,
    )


def check_username(username: str) -> str:
    username = username.strip().lower()
    if not USERNAME.fullmatch(username):
        raise AccountError(
            f"username {username!r} must be 2-64 characters: letters, digits, '_', '.', '@', "
            "'-', starting with a letter or digit"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    return password


async def add_teacher(
    store: RecordsStore,
    username: str,
    password: str,
    *,
    role: Role = "teacher",
    display_name: str = "",
) -> Teacher:
    """Create an account; an existing username is an error (use `set_password`)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    username = check_username(username)
    password_hash = _hasher.hash(check_password(password))
    await store.ensure_schema()
    try:
        async with store.engine.begin() as conn:
            result = await conn.execute(
                TeacherRow.__table__.insert().values(
                    username=username,
                    display_name=display_name.strip()[:128] or username,
                    password_hash=password_hash,
                    role=role,
                    created_at=utc_now(),
                )
            )
    except IntegrityError:
        raise AccountError(f"a teacher named {username!r} already exists") from None
    return Teacher(result.inserted_primary_key[0], username, display_name or username, role)


async def set_password(
    store: RecordsStore, username: str, password: str, *, end_sign_ins: bool = True
) -> None:
    """A new password; every sign-in made with the old one ends (`end_sign_ins`)."""
    password_hash = _hasher.hash(check_password(password))
    values: dict[str, object] = {"password_hash": password_hash}
    if end_sign_ins:
        values["session_version"] = TeacherRow.session_version + 1
    await store.ensure_schema()
    async with store.engine.begin() as conn:
        result = await conn.execute(
            update(TeacherRow).where(TeacherRow.username == check_username(username)).values(values)
        )
    if result.rowcount != 1:
        raise AccountError(f"no teacher named {username!r}")


async def end_sign_ins(store: RecordsStore, teacher_id: int) -> None:
    """End every sign-in of the account, on every device (signing out does this): the
    cookies they hold name a session version that is no longer the account's."""
    await store.ensure_schema()
    async with store.engine.begin() as conn:
        await conn.execute(
            update(TeacherRow)
            .where(TeacherRow.id == teacher_id)
            .values(session_version=TeacherRow.session_version + 1)
        )


async def remove_teacher(store: RecordsStore, username: str, *, hand_to: str | None = None) -> None:
    """Delete the account (its signed-in sessions end with it). Its classes, with their
    visits, sessions and flags, are handed to the teacher `hand_to` first: a removal never
    drops or hides a child's conversation, and one whose account still has classes is
    refused without someone to hand them to."""
    username = check_username(username)
    await store.ensure_schema()
    async with store.engine.begin() as conn:
        leaving = (
            await conn.execute(select(TeacherRow.id).where(TeacherRow.username == username))
        ).scalar()
        if leaving is None:
            raise AccountError(f"no teacher named {username!r}")
        classes = (
            await conn.execute(
                select(func.count()).select_from(ClassRow).where(ClassRow.teacher_id == leaving)
            )
        ).scalar()
        if classes:
            if hand_to is None:
                raise AccountError(
                    f"{username} has {classes} class(es): hand them to another teacher first "
                    "(--hand-to NAME), so that no child's conversation is dropped"
                )
            target = check_username(hand_to)
            heir = (
                await conn.execute(select(TeacherRow.id).where(TeacherRow.username == target))
            ).scalar()
            if heir is None or heir == leaving:
                raise AccountError(f"no other teacher named {hand_to!r} to hand the classes to")
            await conn.execute(
                update(ClassRow).where(ClassRow.teacher_id == leaving).values(teacher_id=heir)
            )
        await conn.execute(delete(TeacherRow).where(TeacherRow.id == leaving))


async def list_teachers(store: RecordsStore) -> list[Teacher]:
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(TeacherRow).order_by(TeacherRow.username))).all()
    return [_teacher(row) for row in rows]  # type: ignore[arg-type]


async def teacher_by_id(store: RecordsStore, teacher_id: int) -> Teacher | None:
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(TeacherRow).where(TeacherRow.id == teacher_id))).first()
    return None if row is None else _teacher(row)  # type: ignore[arg-type]


async def authenticate(store: RecordsStore, username: str, password: str) -> Teacher | None:
    """The teacher if the password is theirs, else None (unknown names take as long)."""
    await store.ensure_schema()
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(TeacherRow).where(TeacherRow.username == username.strip().lower())
            )
        ).first()
    try:
        # argon2 is deliberately slow: keep it off the event loop
        await asyncio.to_thread(_hasher.verify, row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        # the same password, stronger hash: nobody is signed out for it
        await set_password(store, row.username, password, end_sign_ins=False)
    return _teacher(row)  # type: ignore[arg-type]
