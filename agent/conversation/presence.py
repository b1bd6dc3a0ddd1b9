"""Publishes which tutor has the floor, as attributes of the worker's participant, and
answers the student's page when it asks whether its tutor is still there.

The student's page reads `tutor.kind` and `tutor.title` from the tutor participant's
attributes to show who is speaking. Publishing is best effort and off the voice path: it
never delays or breaks a turn, and a failure is logged, not raised. The page also calls
`tutor.ping` on its tutors every second or so: a tutor whose worker was lost stays in the
room for about 20 s before the server removes it, so an unanswered ping is how the page
learns, within seconds, that it must ask for another. The page's word is not trusted alone:
each tutor renews `tutor.alive` (its clock, in seconds) every `ALIVE_EVERY`, and the web
service removes a tutor the page reports lost only when that sign of life is older than
`ALIVE_FOR` (or missing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from livekit import rtc

logger = logging.getLogger("tutor.presence")

KIND_ATTRIBUTE = "tutor.kind"
TITLE_ATTRIBUTE = "tutor.title"
PING_METHOD = "tutor.ping"
# sent by the server (the web service) to a room whose visit a teacher ended
VISIT_ENDED_TOPIC = "tutor.visit-ended"
PUBLISH_TIMEOUT = 5.0
ALIVE_ATTRIBUTE = "tutor.alive"
ALIVE_EVERY = 0.5  # a tutor's sign of life is renewed this often
# a sign of life older than this is a lost tutor's: twice the period and a margin for a
# loaded machine (the hosts' clocks agree, by NTP)
ALIVE_FOR = 1.25

_pending: set[asyncio.Task[None]] = set()


class AttributePublisher(Protocol):
    """What can carry the attributes: the worker's local participant (see `RoomAttributes`)."""

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...


class RoomAttributes:
    """`AttributePublisher` over a connected `livekit.rtc.Room`'s local participant."""

    def __init__(self, room: rtc.Room) -> None:
        self._room = room

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        if not self._room.isconnected():
            logger.debug("not publishing the tutor: the room is not connected")
            return
        await self._room.local_participant.set_attributes(attributes)


def tutor_attributes(kind: str, title: str) -> dict[str, str]:
    return {KIND_ATTRIBUTE: kind, TITLE_ATTRIBUTE: title}


def publish_tutor(publisher: AttributePublisher | None, kind: str, title: str) -> None:
    """Publish `kind` and `title` in the background (nothing to do without a publisher)."""
    if publisher is None:
        return
    task = asyncio.create_task(
        _publish(publisher, tutor_attributes(kind, title)), name="publish_tutor"
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def wait_published() -> None:
    """Wait for this event loop's publications in flight (tests). A publication left
    behind by a loop that has closed never finishes: it is dropped, not waited on (a
    gather over it would touch that closed loop)."""
    loop = asyncio.get_running_loop()
    for task in [t for t in _pending if t.get_loop().is_closed()]:
        _pending.discard(task)
    await asyncio.gather(*(t for t in _pending if t.get_loop() is loop), return_exceptions=True)


async def keep_alive(publisher: AttributePublisher, every: float = ALIVE_EVERY) -> None:
    """Renew this tutor's sign of life every `every` seconds, until cancelled (its job
    ends; a killed worker simply stops)."""
    while True:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await publisher.set_attributes({ALIVE_ATTRIBUTE: f"{time.time():.2f}"})
        except Exception as e:  # the next beat tries again; a missed one is not an error
            logger.debug("sign of life not published: %s", type(e).__name__)
        await asyncio.sleep(every)  # the heartbeat's period


def alive(attributes: Mapping[str, str], now: float | None = None) -> bool:
    """Whether a tutor with these attributes showed a sign of life within `ALIVE_FOR`."""
    try:
        last = float(attributes[ALIVE_ATTRIBUTE])
    except (KeyError, ValueError):
        return False
    return (now if now is not None else time.time()) - last <= ALIVE_FOR


async def _publish(publisher: AttributePublisher, attributes: dict[str, str]) -> None:
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await publisher.set_attributes(attributes)
    except Exception as e:
        logger.warning(
            "could not publish the active tutor: %s",
            type(e).__name__,
            extra={"tutor": attributes[KIND_ATTRIBUTE]},
        )
