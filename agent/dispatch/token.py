"""Student access tokens: join one room, and bring the orchestrator into it."""

from __future__ import annotations

import re
from datetime import timedelta

from livekit import api

from agent.config.roster import orchestrator_worker_name
from agent.config.settings import LiveKitSettings
from agent.conversation.state import new_session_id
from agent.dispatch.plan import DispatchPlan

DEFAULT_TTL = timedelta(hours=2)
MAX_TTL = timedelta(hours=24)
# a room nobody is in closes this soon: after a lost server node, a join the student
# abandoned can still be carried out by the server seconds later and make the room again
# after the visit ended; it must not keep its tutor dispatch for the default 5 minutes
EMPTY_ROOM_SECONDS = 20
# conservative: what LiveKit accepts in room names and identities, and URLs need no escaping
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TokenRequestError(ValueError):
    """Bad input for a token; the message is one line for the person who typed it."""


def check_name(what: str, value: str) -> str:
    if not value:
        raise TokenRequestError(f"{what} must not be empty")
    if len(value) > 64:
        raise TokenRequestError(f"{what} is too long ({len(value)} characters, at most 64)")
    if not NAME_PATTERN.fullmatch(value):
        raise TokenRequestError(
            f"{what} {value!r} may only use letters, digits, '-', '_' and '.', "
            "and must start with a letter or digit"
        )
    return value


def student_token(
    settings: LiveKitSettings,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    session_id: str | None = None,
) -> str:
    """A JWT for `identity` to join `room` only, that dispatches the orchestrator into it.

    `name` is what the tutors and the page show (default: the identity). Raises
    `TokenRequestError`, and `RosterError` if the roster cannot be read.
    """
    check_name("room", room)
    check_name("identity", identity)
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise TokenRequestError(f"ttl must be between 1 minute and {MAX_TTL}")
    dispatch = api.RoomAgentDispatch(
        agent_name=orchestrator_worker_name(settings),
        metadata=DispatchPlan(
            session_id=session_id or new_session_id(), student=identity
        ).to_metadata(),
    )
    return (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(name or identity)
        .with_ttl(ttl)
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=True,
                # a student speaks: no camera, no screen (a token copied out of a page can
                # publish nothing else into a child's room either)
                can_publish_sources=["microphone"],
                can_subscribe=True,
                can_publish_data=True,
            )
        )
        .with_room_config(
            api.RoomConfiguration(agents=[dispatch], empty_timeout=EMPTY_ROOM_SECONDS)
        )
        .to_jwt()
    )
