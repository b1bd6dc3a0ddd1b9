"""A job ends with its session: the student leaving (whoever has the floor, mid-crossing
too), the session closing for any reason but a handover; a crossing from a specialist is one
line and one dispatch; a conversation where nothing goes wrong logs no warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import CloseReason

from agent.dispatch.metadata import dispatch_metadata
from agent.records import RecordsStore
from agent.workers import job as runner
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import Reply, call, say
from harness.fakes.room import MemoryRoom, RoomHub
from harness.rosters import ANNOUNCEMENTS

WAIT = 10.0
STUDENT = "kid-1"
NOUN = "What is a noun?"


@asynccontextmanager
async def lesson(
    scripts: Mapping[str, Sequence[Reply]], **options: Any
) -> AsyncIterator[tuple[Cluster, Job, MemoryRoom]]:
    """The student in the room, and their orchestrator job, greeted."""
    hub = RoomHub()
    student = await hub.join(STUDENT, student=True)
    scripts = {**scripts, "orchestrator": [say("Hi!"), *scripts.get("orchestrator", ())]}
    cluster = Cluster(hub, scripts, **options)
    job = await cluster.start_job(
        ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student=STUDENT)
    )
    await cluster.said(job, "Hi!")
    try:
        yield cluster, job, student
    finally:
        await cluster.close()


async def test_the_tutor_leaves_when_the_student_leaves() -> None:
    async with lesson({}) as (cluster, job, student):
        await student.leave()
        await asyncio.wait_for(job.ended.wait(), WAIT)
        assert cluster.hub.present() == []
        assert job.end_reason == "student left"
        assert job.session is not None and not job.session._started
        assert cluster.rooms_closed == [job.identity]  # its dispatches go with the room


async def test_a_second_orchestrator_for_a_served_room_leaves_without_a_word() -> None:
    """A re-dispatch racing a slow first job (the web service's watchdog): two tutors must
    never talk to one student at once."""
    async with lesson({}) as (cluster, job, _student):
        duplicate = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student=STUDENT)
        )
        await asyncio.wait_for(duplicate.ended.wait(), WAIT)
        assert duplicate.session is None and duplicate.said == []
        assert duplicate.end_reason == "another tutor already serves this room"
        assert cluster.hub.present() == [job.identity]
        assert not job.ended.is_set() and job.said == ["Hi!"]


async def test_of_two_jobs_starting_together_the_later_dispatch_leaves_without_a_word() -> None:
    """The later dispatch's job starts first, with no tutor in the room yet: the server's
    creation order says an earlier dispatch has a tutor on its way, so it leaves."""
    hub = RoomHub()
    await hub.join(STUDENT, student=True)
    asked: list[Job] = []

    def served_by_earlier(job: Job) -> bool:
        asked.append(job)
        return len(asked) == 1  # the first to ask holds the later dispatch

    cluster = Cluster(hub, {"orchestrator": [say("Hi!")]}, served_by_earlier=served_by_earlier)
    try:
        metadata = dispatch_metadata(session="s-1", student=STUDENT)
        later = await cluster.start_job(ORCHESTRATOR_WORKER, metadata)
        await asyncio.wait_for(later.ended.wait(), WAIT)
        assert later.session is None and later.said == []
        assert later.end_reason == "an earlier dispatch's tutor serves this room"
        earlier = await cluster.start_job(ORCHESTRATOR_WORKER, metadata)
        await cluster.said(earlier, "Hi!")
        assert cluster.hub.present() == [earlier.identity]  # tutors only: the later one left
    finally:
        await cluster.close()


async def test_the_english_tutor_leaves_when_the_student_leaves_it() -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english_rt": [say("A noun names a thing.")],
    }
    async with lesson(scripts) as (cluster, job, student):
        await job.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await cluster.said(english, "A noun names a thing.")
        await student.leave()
        await asyncio.wait_for(english.ended.wait(), WAIT)
        assert cluster.hub.present() == []
        # the orchestrator left at the handover (the session went on): only English closes
        assert cluster.rooms_closed == [english.identity]


async def test_a_student_leaving_mid_crossing_ends_both_jobs_and_the_dispatch() -> None:
    scripts = {"orchestrator": [call("route_to_english", question_summary=NOUN)]}
    # the English job starts late: the student is gone before it could take the floor
    async with lesson(scripts, join_delay=0.3) as (cluster, job, student):
        await job.session.run(user_input=NOUN)
        await student.leave()
        await asyncio.wait_for(job.ended.wait(), WAIT)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.ended.wait(), WAIT)
        assert cluster.hub.present() == []
        assert english.said == []  # never spoke into an empty room
        assert cluster.cancelled  # the orchestrator took its dispatch back


async def test_a_session_closed_by_the_student_disconnecting_ends_the_job() -> None:
    async with lesson({}) as (cluster, job, _student):
        assert job.session is not None
        # what the framework's room input does when the linked participant disconnects
        job.session._close_soon(reason=CloseReason.PARTICIPANT_DISCONNECTED, drain=False)
        await asyncio.wait_for(job.ended.wait(), WAIT)
        assert job.end_reason == "session closed: participant_disconnected"
        assert cluster.rooms_closed == [job.identity]


async def test_a_crossing_from_a_specialist_is_one_line_and_one_dispatch() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary="What is 7 times 8?")],
        "math": [say("It is 56."), call("route_to_english", question_summary=NOUN)],
        "english_rt": [say("A noun names a thing.")],
    }
    async with lesson(scripts) as (cluster, job, _student):
        await job.session.run(user_input="What is 7 times 8?")
        await cluster.said(job, "It is 56.")
        await job.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await cluster.said(english, "A noun names a thing.")
        lines = [line for line in job.said if line in ANNOUNCEMENTS.values()]
        assert lines == [ANNOUNCEMENTS["math"], ANNOUNCEMENTS["english"]]  # one per move
        assert [worker for worker, _ in cluster.dispatched] == [ENGLISH_WORKER]
        # Math decided: the orchestrator's model was not asked again
        assert cluster.log.names() == ["orchestrator", "orchestrator", "math", "math", "english_rt"]


async def test_a_conversation_where_nothing_goes_wrong_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripts = {
        "orchestrator": [
            call("route_to_english", question_summary=NOUN),
            call("route_to_history", question_summary="Who was Napoleon?"),
        ],
        "english_rt": [
            say("A noun names a thing."),
            call("route_back_to_orchestrator", reason="Who was Napoleon?"),
        ],
        "history": [say("Napoleon was a French emperor.")],
    }
    with caplog.at_level(logging.WARNING):
        async with lesson(scripts) as (cluster, job, student):
            await job.session.run(user_input=NOUN)
            english = await cluster.job(ENGLISH_WORKER, 1)
            await cluster.said(english, "A noun names a thing.")
            await english.session.run(user_input="Who was Napoleon?")
            back = await cluster.job(ORCHESTRATOR_WORKER, 2)
            await cluster.said(back, "Napoleon was a French emperor.")
            await student.leave()
            await asyncio.wait_for(back.ended.wait(), WAIT)
    noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


async def test_a_student_whose_connection_is_lost_leaves_the_room_for_them_to_come_back_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a student who left themselves takes the room (and its dispatches) with them:
    one whose connection dropped is waited for (and the same tutor goes on if they come
    back), then the job ends and leaves the room for their page to rejoin."""
    monkeypatch.setattr(runner, "STUDENT_RETURN_TIMEOUT", 0.5)
    async with lesson({"orchestrator": [say("Still here!")]}) as (cluster, job, _student):
        await cluster.hub.leave(STUDENT, on_purpose=False)
        await cluster.hub.join(STUDENT, student=True)  # back: the same tutor goes on
        assert job.session is not None
        await job.session.run(user_input="Are you still there?")
        await cluster.said(job, "Still here!")
        await cluster.hub.leave(STUDENT, on_purpose=False)
        await asyncio.wait_for(job.ended.wait(), WAIT)
        assert job.end_reason == "student's connection lost"
        assert cluster.rooms_closed == []


async def test_a_job_that_loses_its_own_connection_leaves_the_session_to_another(
    tmp_path: Path,
) -> None:
    """Its server node was lost: the job leaves without ending the session (a resumed
    tutor continues it) and without closing the room."""
    store = RecordsStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    try:
        async with lesson({}, records=store) as (cluster, job, _student):
            job.room.lose_connection()
            await asyncio.wait_for(job.ended.wait(), WAIT)
            assert job.end_reason == "lost the connection to the room"
            assert cluster.rooms_closed == []
        doc = await store.export("s-1")
    finally:
        await store.aclose()
    assert doc is not None and doc["session"]["ended_at"] is None  # still the student's
