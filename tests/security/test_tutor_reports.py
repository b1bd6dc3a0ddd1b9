"""A student's page cannot spend the school's tutors (issue 30): its report of a lost tutor
removes no tutor that still shows signs of life of its own, reloading the page does not
renew the visit's budget of dispatches, and a token that outlives its visit brings no tutor
that continues it. LiveKit's APIs are the local Twirp fake, spoken to
by the real `LiveKitAPI`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from livekit.protocol.models import ParticipantInfo
from sqlalchemy import select

from agent.conversation.presence import ALIVE_ATTRIBUTE
from agent.records.resume import session_closed
from agent.records.schema import VisitRow
from harness.databases import RecordsDatabase
from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer
from harness.web import Site, open_site

TUTOR = "agent-AJ_tutor"


@dataclass
class Stage:
    site: Site
    livekit: TwirpDispatchServer


@pytest.fixture
async def stage(database: RecordsDatabase) -> AsyncIterator[Stage]:
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        # every ask may dispatch at once: the budget, not the clock, is under test
        async for site in open_site(
            database,
            livekit_url=livekit.url,
            livekit_api_secret=DEFAULT_SECRET,
            web_tutor_arrival_timeout=0.001,
        ):
            yield Stage(site, livekit)


async def join(client: httpx.AsyncClient, stage: Stage) -> dict:
    code = stage.site.school.rivera_class.code
    answer = await client.post("/api/token", json={"code": code, "name": "Maya"})
    assert answer.status_code == 200
    return answer.json()


async def ask(client: httpx.AsyncClient, token: str, lost: list[str] | None = None) -> str:
    body = {"lost": lost} if lost is not None else {}
    answer = await client.post(
        "/api/tutor", headers={"Authorization": f"Bearer {token}"}, json=body
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["status"]


def tutor_with_sign_of_life(seconds_ago: float) -> ParticipantInfo:
    return ParticipantInfo(
        identity=TUTOR,
        kind=ParticipantInfo.Kind.AGENT,
        attributes={ALIVE_ATTRIBUTE: f"{time.time() - seconds_ago:.2f}"},
    )


async def test_a_page_cannot_have_a_tutor_that_shows_signs_of_life_removed(stage: Stage) -> None:
    async with httpx.AsyncClient(base_url=stage.site.url) as page:
        joined = await join(page, stage)
        room = joined["room"]
        student = ParticipantInfo(identity=joined["identity"])
        stage.livekit.participants[room] = [tutor_with_sign_of_life(0.2), student]
        for _ in range(5):  # a hostile page, saying so again and again
            assert await ask(page, joined["token"], lost=[TUTOR]) == "present"
        assert stage.livekit.removed == []
        assert stage.livekit.history(room) == []  # no dispatch was made for it

        # a tutor whose worker was lost stops renewing its sign of life: then it goes
        stage.livekit.participants[room] = [tutor_with_sign_of_life(5.0), student]
        assert await ask(page, joined["token"], lost=[TUTOR]) == "dispatched"
        assert stage.livekit.removed == [(room, TUTOR)]
        assert len(stage.livekit.history(room)) == 1


async def test_reloading_the_page_does_not_renew_the_visits_dispatches(stage: Stage) -> None:
    async with httpx.AsyncClient(base_url=stage.site.url) as page:
        joined = await join(page, stage)
        room = joined["room"]
        spent = [await ask(page, joined["token"]) for _ in range(3)]
        assert spent == ["dispatched", "dispatched", "gave_up"]  # WEB_TUTOR_MAX_DISPATCHES=3
        resume = joined["resume"]
        for _ in range(3):  # reload, reload, reload: each rejoin's token brings its own tutor
            again = await page.post("/api/token", json={"resume": resume})
            assert again.status_code == 200
            resume = again.json()["resume"]
            assert await ask(page, again.json()["token"]) == "gave_up"
        assert len(stage.livekit.history(room)) == 2  # the web service made no more


async def test_a_tutor_brought_by_an_ended_visits_token_finds_it_over(stage: Stage) -> None:
    """A student token outlives the visit by up to 15 minutes: the tutor it brings reads
    the visit's end in the records and leaves (the real-server tier replays it whole)."""
    async with httpx.AsyncClient(base_url=stage.site.url) as page:
        joined = await join(page, stage)
        session = await joined_session(stage, joined)
        assert not await session_closed(stage.site.store, session)
        left = await page.post("/api/leave", json={"resume": joined["resume"]})
        assert left.status_code == 204
        assert await session_closed(stage.site.store, session)
    assert not await session_closed(stage.site.store, "a-developers-session")  # no visit


async def joined_session(stage: Stage, joined: dict) -> str:
    query = select(VisitRow.session_id).where(VisitRow.room == joined["room"])
    async with stage.site.store.engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()
