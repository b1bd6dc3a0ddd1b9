"""A student's page coming back to the same visit: after a reload, or a connection LiveKit
could not restore, within `WEB_RESUME_MINUTES` of its last join.

At every join the page gets a resume key: the visit's session id and the key's generation,
signed with the service's secret and timed. The page keeps it in the tab (`sessionStorage`:
gone with the tab, never shared with another), and gives it back instead of the class code
and name. The answer is a token for the same room, identity and session, so the tutor that
comes resumes the conversation from the records and the teacher sees one visit, and the
next key: a key opens the visit once (a copy replayed after it is refused). A key is no use
to anyone else's visit (it names one session and cannot be forged), nor after the window,
nor `VISIT_LIFETIME` after the visit began, nor once the visit was ended (Leave) or its
class closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from agent.records.schema import ClassRow, VisitRow
from agent.records.store import RecordsStore, utc_now
from agent.web.classes import STUDENT_TOKEN_TTL, Join, JoinError

SALT = "tutor.rejoin"

# however often a page rejoins, a visit is not opened again this long after it began
VISIT_LIFETIME = timedelta(hours=3)

EXPIRED = JoinError(
    410, "resume_expired", "That visit has ended. Type your class code and name to start again."
)


@dataclass(frozen=True)
class ResumeKey:
    """What a resume key says: the visit's session, and which of its keys it is."""

    session_id: str
    generation: int


def resume_key(secret: str, session_id: str, generation: int) -> str:
    """What the page keeps to come back to this visit (once)."""
    serializer = URLSafeTimedSerializer(secret, salt=SALT)
    return serializer.dumps({"session": session_id, "g": generation})


def key_of(secret: str, key: str, window: timedelta) -> ResumeKey:
    """What a resume key says, if it is ours and younger than `window`."""
    try:
        data = URLSafeTimedSerializer(secret, salt=SALT).loads(key, max_age=window.total_seconds())
    except (SignatureExpired, BadSignature):
        raise EXPIRED from None
    session = data.get("session") if isinstance(data, dict) else None
    generation = data.get("g") if isinstance(data, dict) else None
    if not isinstance(session, str) or not session or not isinstance(generation, int):
        raise EXPIRED
    return ResumeKey(session, generation)


async def spend_key(store: RecordsStore, key: ResumeKey, **values: Any) -> bool:
    """Use `key` once: true for exactly one of its uses, while the visit is open (not ended,
    within its lifetime); `values` are set on the visit at the same time."""
    now = utc_now()
    spend = (
        update(VisitRow)
        .where(
            VisitRow.session_id == key.session_id,
            VisitRow.resume_generation == key.generation,
            VisitRow.ended_at.is_(None),
            VisitRow.created_at > now - VISIT_LIFETIME,
        )
        .values(resume_generation=key.generation + 1, **values)
    )
    result = await store.write_waiting(lambda conn: conn.execute(spend))
    return result.rowcount == 1


async def end_visit(store: RecordsStore, key: ResumeKey) -> bool:
    """The student pressed Leave: no key opens the visit again (false: the key was spent,
    or the visit had ended)."""
    await store.ensure_schema()
    return await spend_key(store, key, ended_at=utc_now(), end_reason="student")


async def rejoin_visit(store: RecordsStore, settings: LiveKitSettings, key: ResumeKey) -> Join:
    """A token for the visit's own room, identity and session (its dispatch brings the
    orchestrator back, which resumes the session), and the visit's next key. The visit's
    budget of dispatches is kept (reloading does not buy the web service more to make); its
    clock and any give-up start again with the token's own. The key is spent: a copy of it
    opens nothing."""
    await store.ensure_schema()
    query = (
        select(VisitRow, ClassRow.is_open)
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .where(VisitRow.session_id == key.session_id)
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:  # erased, or purged
        raise EXPIRED
    if not row.is_open:
        raise JoinError(
            403, "class_closed", "This class is closed right now. Please ask your teacher."
        )
    if not await spend_key(store, key, last_dispatch_at=utc_now(), gave_up_at=None):
        raise EXPIRED  # used already (a copy), ended by Leave, or too old
    token = student_token(
        settings,
        room=row.room,
        identity=row.identity,
        name=row.student_name,
        ttl=STUDENT_TOKEN_TTL,
        session_id=key.session_id,
    )
    return Join(
        token=token,
        room=row.room,
        identity=row.identity,
        session_id=key.session_id,
        resume_generation=key.generation + 1,
    )
