"""No silent room: the web service dispatches the orchestrator again when a student's room
has no tutor, never twice at once and never beside a tutor on its way, and gives up (said
to the page, counted, recorded) after the limit. LiveKit's room and dispatch APIs are the
local Twirp fake, spoken to by the real `LiveKitAPI`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from livekit.api import LiveKitAPI
from livekit.protocol.agent import JobStatus
from livekit.protocol.agent_dispatch import AgentDispatch
from livekit.protocol.models import ParticipantInfo
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from agent.dispatch.client import Dispatcher
from agent.dispatch.metadata import parse_dispatch_metadata
from agent.records import RecordsStore
from agent.records.schema import VisitRow
from agent.records.store import utc_now
from agent.web.watchdog import SummonPolicy, TutorStatus, Visit, find_visit, summon_tutor
from harness.databases import RecordsDatabase
from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer
from harness.web import Site, open_site, sign_in, unused_port

AGENT = "learning-orchestrator"


@dataclass
class Stage:
    """The seeded site, and the LiveKit APIs it reads (the Twirp fake)."""

    site: Site
    livekit: TwirpDispatchServer

    @property
    def url(self) -> str:
        return self.site.url

    @property
    def store(self) -> RecordsStore:
        return self.site.store

    async def join(self, client: httpx.AsyncClient) -> dict:
        code = self.site.school.rivera_class.code
        answer = await client.post("/api/token", json={"code": code, "name": "Maya"})
        assert answer.status_code == 200
        return answer.json()

    async def visit_row(self, room: str) -> VisitRow:
        query = select(VisitRow).where(VisitRow.room == room)
        async with self.store.engine.connect() as conn:
            return (await conn.execute(query)).one()  # type: ignore[return-value]


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("tutor_web_redispatches_total", {"outcome": outcome})
    return value or 0.0


async def open_stage(
    database: RecordsDatabase, livekit: TwirpDispatchServer, *, arrival_timeout: float = 0.001
) -> AsyncIterator[Stage]:
    # by default every ask may dispatch again: no waiting in tests
    async for site in open_site(
        database,
        livekit_url=livekit.url,
        livekit_api_secret=DEFAULT_SECRET,
        web_tutor_arrival_timeout=arrival_timeout,
    ):
        yield Stage(site, livekit)


@pytest.fixture
async def stage(database: RecordsDatabase) -> AsyncIterator[Stage]:
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for opened in open_stage(database, livekit):
            yield opened


def ask(client: httpx.AsyncClient, token: str) -> asyncio.Future:
    return client.post("/api/tutor", headers={"Authorization": f"Bearer {token}"}, json={})  # type: ignore[return-value]


async def test_an_empty_room_gets_the_orchestrator_again_with_the_same_session(
    stage: Stage,
) -> None:
    before = counted("dispatched")
    async with httpx.AsyncClient(base_url=stage.url) as client:
        joined = await stage.join(client)
        answer = await ask(client, joined["token"])
    assert answer.status_code == 200
    assert answer.json() == {"status": "dispatched", "message": "Your tutor is on the way…"}
    [dispatch] = stage.livekit.dispatches(joined["room"])
    assert dispatch.agent_name == AGENT
    row = await stage.visit_row(joined["room"])
    metadata = parse_dispatch_metadata(dispatch.metadata)
    assert metadata == {"session": row.session_id, "student": joined["identity"]}
    assert row.dispatches == 2 and row.gave_up_at is None
    assert counted("dispatched") == before + 1


async def test_a_tutor_in_the_room_or_on_its_way_is_never_doubled(stage: Stage) -> None:
    async with httpx.AsyncClient(base_url=stage.url) as client:
        joined = await stage.join(client)
        room = joined["room"]
        assert (await ask(client, joined["token"])).json()["status"] == "dispatched"
        # a worker took that dispatch's job; its tutor has not joined yet
        [dispatch] = stage.livekit.dispatches(room)
        job = dispatch.state.jobs.add()
        job.state.status = JobStatus.JS_PENDING
        assert (await ask(client, joined["token"])).json()["status"] == "on_the_way"
        # the tutor joined
        stage.livekit.participants[room] = [
            ParticipantInfo(identity="agent-AJ_1", kind=ParticipantInfo.Kind.AGENT)
        ]
        answer = (await ask(client, joined["token"])).json()
        assert answer == {"status": "present", "message": ""}
    assert len(stage.livekit.history(room)) == 1
    assert (await stage.visit_row(room)).dispatches == 2


async def test_concurrent_asks_make_one_dispatch(database: RecordsDatabase) -> None:
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for stage in open_stage(database, livekit, arrival_timeout=5):
            async with httpx.AsyncClient(base_url=stage.url) as client:
                joined = await stage.join(client)
                # the token's dispatch was made long enough ago
                async with stage.store.engine.begin() as conn:
                    await conn.execute(
                        update(VisitRow)
                        .where(VisitRow.room == joined["room"])
                        .values(last_dispatch_at=utc_now() - timedelta(seconds=10))
                    )
                answers = await asyncio.gather(*(ask(client, joined["token"]) for _ in range(5)))
            statuses = sorted(a.json()["status"] for a in answers)
            assert statuses.count("dispatched") == 1, statuses
            assert len(livekit.history(joined["room"])) == 1
            assert (await stage.visit_row(joined["room"])).dispatches == 2


async def test_it_gives_up_after_the_limit_says_so_withdraws_its_dispatches_and_records_it(
    stage: Stage,
) -> None:
    before = counted("gave_up")
    async with httpx.AsyncClient(base_url=stage.url) as client:
        joined = await stage.join(client)
        statuses = [(await ask(client, joined["token"])).json() for _ in range(4)]
    # the token's dispatch, then two more (WEB_TUTOR_MAX_DISPATCHES=3), then the give-up
    assert [s["status"] for s in statuses] == ["dispatched", "dispatched", "gave_up", "gave_up"]
    assert "busy" in statuses[-1]["message"]
    assert len(stage.livekit.history(joined["room"])) == 2
    # no dispatch is left for a worker that starts later: the page told the student to leave
    assert stage.livekit.dispatches(joined["room"]) == []
    row = await stage.visit_row(joined["room"])
    assert row.dispatches == 3 and row.gave_up_at is not None
    assert counted("gave_up") == before + 1  # counted once, however often the page asks
    # and the teacher sees it
    async with stage.site.client() as teacher:
        assert await sign_in(teacher, "rivera") == 303
        sessions = (await teacher.get("/api/teacher/sessions")).json()
    assert [s["gave_up"] for s in sessions if s["id"] == row.session_id] == [True]


async def test_dispatches_of_one_visit_are_spaced_by_the_arrival_timeout(
    stage: Stage,
) -> None:
    async with httpx.AsyncClient(base_url=stage.url) as client:
        joined = await stage.join(client)
    visit = await find_visit(stage.store, joined["room"], joined["identity"])
    assert visit is not None
    policy = SummonPolicy(AGENT, min_interval=timedelta(seconds=8), max_dispatches=3)
    lk = LiveKitAPI(stage.livekit.url, "devkey", DEFAULT_SECRET, failover=False)
    try:
        dispatcher = Dispatcher(lk)
        soon = visit.last_dispatch_at + timedelta(seconds=3)
        assert await summon_tutor(lk, dispatcher, stage.store, visit, policy, now=soon) == (
            TutorStatus.ON_THE_WAY
        )
        later = visit.last_dispatch_at + timedelta(seconds=9)
        assert await summon_tutor(lk, dispatcher, stage.store, visit, policy, now=later) == (
            TutorStatus.DISPATCHED
        )
    finally:
        await lk.aclose()
    assert len(stage.livekit.history(joined["room"])) == 1


async def test_only_a_students_own_token_may_ask(stage: Stage) -> None:
    async with httpx.AsyncClient(base_url=stage.url) as client:
        assert (await client.post("/api/tutor")).status_code == 401
        forged = await ask(client, "not-a-token")
        assert forged.status_code == 401
        joined = await stage.join(client)
    assert stage.livekit.history(joined["room"]) == []


async def test_an_unreachable_livekit_server_is_a_503_the_page_asks_again(
    database: RecordsDatabase,
) -> None:
    nowhere = TwirpDispatchServer(api_secret=DEFAULT_SECRET)
    nowhere.url = f"http://127.0.0.1:{unused_port()}"  # never started: nothing listens
    async for stage in open_stage(database, nowhere):
        async with httpx.AsyncClient(base_url=stage.url, timeout=30) as client:
            joined = await stage.join(client)
            answer = await ask(client, joined["token"])
        assert answer.status_code == 503 and answer.json()["status"] == "unknown"
        row = await stage.visit_row(joined["room"])
        assert row.dispatches == 1 and row.gave_up_at is None
        assert utc_now() >= row.last_dispatch_at


async def visit_and_api(stage: Stage) -> tuple[dict, Visit, LiveKitAPI]:
    """A student joined, their visit, and the LiveKit API client the watchdog uses."""
    async with httpx.AsyncClient(base_url=stage.url) as client:
        joined = await stage.join(client)
    visit = await find_visit(stage.store, joined["room"], joined["identity"])
    assert visit is not None
    return joined, visit, LiveKitAPI(stage.livekit.url, "devkey", DEFAULT_SECRET, failover=False)


async def running_job(
    dispatcher: Dispatcher, stage: Stage, room: str, identity: str
) -> AgentDispatch:
    """The orchestrator's dispatch into `room`, with a job the server says `identity` runs."""
    await dispatcher.dispatch(agent_name=AGENT, room=room, metadata="the token's")
    [served] = stage.livekit.dispatches(room)
    job = served.state.jobs.add()
    job.state.status = JobStatus.JS_RUNNING
    job.state.participant_identity = identity
    return served


async def test_a_tutor_the_page_lost_is_removed_and_replaced_at_once(stage: Stage) -> None:
    """A killed worker leaves its participant in the room (~20 s) and its job "running"
    for good: on the page's word, that tutor (and nothing else) is removed with its
    dispatch, and the orchestrator comes again for the same session, without waiting."""
    joined, visit, lk = await visit_and_api(stage)
    room = joined["room"]
    try:
        dispatcher = Dispatcher(lk)
        served = await running_job(dispatcher, stage, room, "agent-AJ_dead")
        stage.livekit.participants[room] = [
            ParticipantInfo(identity="agent-AJ_dead", kind=ParticipantInfo.Kind.AGENT),
            ParticipantInfo(identity=joined["identity"], kind=ParticipantInfo.Kind.STANDARD),
        ]
        policy = SummonPolicy(AGENT, min_interval=timedelta(seconds=8), max_dispatches=3)
        soon = visit.last_dispatch_at + timedelta(seconds=1)
        # without the page's word the ghost counts as a tutor in the room
        assert await summon_tutor(lk, dispatcher, stage.store, visit, policy, now=soon) == (
            TutorStatus.PRESENT
        )
        # a page may only clear agents of its own room
        lost = ["agent-AJ_dead", joined["identity"], "agent-of-another-room"]
        status = await summon_tutor(lk, dispatcher, stage.store, visit, policy, lost=lost, now=soon)
    finally:
        await lk.aclose()
    assert status is TutorStatus.DISPATCHED
    assert stage.livekit.removed == [(room, "agent-AJ_dead")]
    [replacement] = stage.livekit.dispatches(room)  # the dead job's dispatch is gone
    assert replacement.id != served.id
    assert parse_dispatch_metadata(replacement.metadata) == {
        "session": visit.session_id,
        "student": joined["identity"],
    }


async def test_a_lost_tutor_still_listed_after_its_removal_is_replaced_all_the_same(
    stage: Stage,
) -> None:
    """The server may list a participant a moment after removing it: the tutor the page
    lost is not taken for a tutor present, and the orchestrator is sent."""
    joined, visit, lk = await visit_and_api(stage)
    room = joined["room"]
    try:
        dispatcher = Dispatcher(lk)
        await running_job(dispatcher, stage, room, "agent-AJ_dead")
        stage.livekit.participants[room] = [
            ParticipantInfo(identity="agent-AJ_dead", kind=ParticipantInfo.Kind.AGENT)
        ]
        stage.livekit.linger = True
        policy = SummonPolicy(AGENT, min_interval=timedelta(seconds=8), max_dispatches=3)
        soon = visit.last_dispatch_at + timedelta(seconds=1)
        status = await summon_tutor(
            lk, dispatcher, stage.store, visit, policy, lost=["agent-AJ_dead"], now=soon
        )
    finally:
        await lk.aclose()
    assert stage.livekit.removed == [(room, "agent-AJ_dead")]
    assert status is TutorStatus.DISPATCHED


async def test_a_tutor_that_left_with_its_job_still_running_is_replaced(stage: Stage) -> None:
    """A worker killed whole: its job process left the room, but the server still counts
    the job as running. On the page's word its dispatch goes, and a tutor comes again."""
    joined, visit, lk = await visit_and_api(stage)
    room = joined["room"]
    try:
        dispatcher = Dispatcher(lk)
        served = await running_job(dispatcher, stage, room, "agent-AJ_gone")
        policy = SummonPolicy(AGENT, min_interval=timedelta(seconds=8), max_dispatches=3)
        later = visit.last_dispatch_at + timedelta(seconds=30)
        assert await summon_tutor(lk, dispatcher, stage.store, visit, policy, now=later) == (
            TutorStatus.ON_THE_WAY  # the stale job looks like a tutor coming
        )
        status = await summon_tutor(
            lk, dispatcher, stage.store, visit, policy, lost=["agent-AJ_gone"], now=later
        )
    finally:
        await lk.aclose()
    assert status is TutorStatus.DISPATCHED
    assert stage.livekit.removed == []  # nobody was in the room to remove
    assert [d.id for d in stage.livekit.dispatches(room)] != [served.id]
