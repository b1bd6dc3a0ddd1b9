"""A student's page coming back to the same visit: after a reload, or a connection LiveKit
could not restore, within `WEB_RESUME_MINUTES` of its last join.

At every join the page gets a resume key: the visit's session id, signed with the service's
secret and timed. The page keeps it in the tab (`sessionStorage`: gone with the tab, never
shared with another), and gives it back instead of the class code and name. The answer is a
token for the same room, identity and session, so the tutor that comes resumes the
conversation from the records and the teacher sees one visit. A key is no use to anyone
else's visit (it names one session and cannot be forged), nor after the window, nor once
the class is closed.
"""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from agent.records.schema import ClassRow, VisitRow
from agent.records.store import RecordsStore, utc_now
from agent.web.classes import STUDENT_TOKEN_TTL, Join, JoinError

SALT = "tutor.rejoin"

EXPIRED = JoinError(
    410, "resume_expired", "That visit has ended. Type your class code and name to start again."
)


def resume_key(secret: str, session_id: str) -> str:
    """What the page keeps to come back to this visit."""
    return URLSafeTimedSerializer(secret, salt=SALT).dumps({"session": session_id})


def session_of(secret: str, key: str, window: timedelta) -> str:
    """The session a resume key names, if it is ours and younger than `window`."""
    try:
        data = URLSafeTimedSerializer(secret, salt=SALT).loads(key, max_age=window.total_seconds())
    except (SignatureExpired, BadSignature):
        raise EXPIRED from None
    session = data.get("session") if isinstance(data, dict) else None
    if not isinstance(session, str) or not session:
        raise EXPIRED
    return session


async def rejoin_visit(store: RecordsStore, settings: LiveKitSettings, session_id: str) -> Join:
    """A token for the visit's own room, identity and session (its dispatch brings the
    orchestrator back, which resumes the session); the visit counts its dispatches anew."""
    await store.ensure_schema()
    query = (
        select(VisitRow, ClassRow.is_open)
        .join(ClassRow, ClassRow.id == VisitRow.class_id)
        .where(VisitRow.session_id == session_id)
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:  # erased, or purged
        raise EXPIRED
    if not row.is_open:
        raise JoinError(
            403, "class_closed", "This class is closed right now. Please ask your teacher."
        )
    token = student_token(
        settings,
        room=row.room,
        identity=row.identity,
        name=row.student_name,
        ttl=STUDENT_TOKEN_TTL,
        session_id=session_id,
    )
    now = utc_now()
    fresh = (
        update(VisitRow)
        .where(VisitRow.session_id == session_id)
        .values(dispatches=1, last_dispatch_at=now, gave_up_at=None)
    )
    await store.write_waiting(lambda conn: conn.execute(fresh))
    return Join(token=token, room=row.room, identity=row.identity, session_id=session_id)
