"""A conversation survives its job (issue 22, item 1): a new job whose dispatch names a
session the records hold continues it, with the conversation so far, the tutor that had
the floor, a welcome back instead of the greeting, and one transcript with no turn twice;
on both records backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.dispatch.metadata import dispatch_metadata
from agent.records import RecordsStore
from agent.records.models import SessionEnded, SessionResumed, SessionStarted, TurnRecord
from harness.databases import RecordsDatabase
from harness.fakes.cluster import ORCHESTRATOR_WORKER, Cluster
from harness.fakes.llm import Reply, Request, call, say
from harness.fakes.room import RoomHub
from harness.rosters import ANNOUNCEMENTS

WAIT = 10.0
GREETING = "Hello! What would you like to learn today?"
SEVEN_EIGHTS = "What is seven times eight?"
FIFTY_SIX = "Seven times eight is fifty-six."
NINE_NINES = "And nine times nine?"
EIGHTY_ONE = "Nine times nine is eighty-one."
METADATA = dispatch_metadata(session="s-1", student="kid-1")


def welcoming(answer_after: dict[str, str]) -> Callable[[Request], Reply]:
    """A tutor's model: welcomes back (recalling the last thing it said) when asked to, else
    answers the student's last question from `answer_after`."""

    def reply(request: Request) -> Reply:
        system = " ".join(request.texts("system"))
        if "come back" in system:
            said = request.texts("assistant")
            return say(f"Welcome back! We were at: {said[-1] if said else 'the start'}")
        if request.texts("user"):
            return say(answer_after.get(request.texts("user")[-1], "(no answer scripted)"))
        return say(GREETING)

    return reply


def scripts() -> dict[str, object]:
    return {
        "orchestrator": [say(GREETING), call("route_to_math", question_summary=SEVEN_EIGHTS)],
        "math": welcoming({SEVEN_EIGHTS: FIFTY_SIX, NINE_NINES: EIGHTY_ONE}),
    }


async def test_a_new_job_for_a_known_session_continues_it_with_the_tutor_that_had_the_floor(
    database: RecordsDatabase,
) -> None:
    store = database.store()
    cluster = Cluster(RoomHub(), scripts(), records=store)  # type: ignore[arg-type]
    try:
        first = await cluster.start_job(ORCHESTRATOR_WORKER, METADATA)
        await cluster.said(first, GREETING)
        await first.session.run(user_input=SEVEN_EIGHTS)
        await cluster.said(first, FIFTY_SIX)
        # the page is reloaded: the student leaves, the job ends the session and leaves
        await cluster.hub.leave("kid-1")
        await asyncio.wait_for(first.ended.wait(), WAIT)
        ended = await store.export("s-1")
        assert ended is not None and ended["session"]["end_reason"] == "student left"

        await cluster.hub.join("kid-1", student=True)  # back, and the dispatch names the session
        second = await cluster.start_job(ORCHESTRATOR_WORKER, METADATA)
        welcome = f"Welcome back! We were at: {FIFTY_SIX}"
        await cluster.said(second, welcome)
        assert GREETING not in second.said  # no new-student greeting
        assert second.session.userdata.active_tutor == "math"
        math_requests = [r for r in cluster.log.requests if r.llm_name == "math"]
        resumed = math_requests[-1]
        assert resumed.texts("user") == [SEVEN_EIGHTS]  # the conversation so far, once
        assert FIFTY_SIX in resumed.texts("assistant")

        assert second.writer is not None and await second.writer.flush(WAIT)
        reopened = await store.export("s-1")
        assert reopened is not None and reopened["session"]["ended_at"] is None
        await second.session.run(user_input=NINE_NINES)
        await cluster.said(second, EIGHTY_ONE)
        await cluster.close()
        doc = await store.export("s-1")
    finally:
        await cluster.close()
        await store.aclose()

    assert doc is not None
    assert [(t["speaker"], t["text"]) for t in doc["turns"]] == [
        ("orchestrator", GREETING),
        ("student", SEVEN_EIGHTS),
        ("orchestrator", ANNOUNCEMENTS["math"]),
        ("math", FIFTY_SIX),
        ("math", welcome),
        ("student", NINE_NINES),
        ("math", EIGHTY_ONE),
    ]


async def test_a_job_for_a_session_without_turns_greets_as_for_a_new_student(
    database: RecordsDatabase,
) -> None:
    store = database.store()
    cluster = Cluster(RoomHub(), scripts(), records=store)  # type: ignore[arg-type]
    try:
        job = await cluster.start_job(ORCHESTRATOR_WORKER, METADATA)
        await cluster.said(job, GREETING)
        assert job.session.userdata.active_tutor == "orchestrator"
    finally:
        await cluster.close()
        await store.aclose()


async def test_an_earlier_jobs_end_written_late_does_not_close_the_resumed_session(
    database: RecordsDatabase,
) -> None:
    """The lost job's last records may reach the store after the new job reopened the
    session: the session stays open, and ends when the new job ends it."""
    store: RecordsStore = database.store()
    t = 1_790_000_000.0
    try:
        await store.write(
            [
                SessionStarted("s-9", "kid", "room", at=t),
                TurnRecord("s-9", "i1", "student", "hi", t),
            ]
        )
        await store.write([SessionResumed("s-9", at=t + 60)])
        await store.write([SessionEnded("s-9", "worker lost", at=t + 30)])  # late, older
        doc = await store.export("s-9")
        assert doc is not None and doc["session"]["ended_at"] is None
        await store.write([SessionEnded("s-9", "student left", at=t + 90)])
        doc = await store.export("s-9")
        assert doc is not None and doc["session"]["end_reason"] == "student left"
    finally:
        await store.aclose()


async def test_an_unreadable_store_starts_the_job_afresh_rather_than_silent(
    database: RecordsDatabase,
) -> None:
    store = database.store()
    cluster = Cluster(RoomHub(), scripts(), records=store)  # type: ignore[arg-type]
    try:
        await store.ensure_schema()
        database.cut()
        try:
            job = await asyncio.wait_for(cluster.start_job(ORCHESTRATOR_WORKER, METADATA), WAIT)
            await cluster.said(job, GREETING)
        finally:
            database.restore()
    finally:
        await cluster.close()
        await store.aclose()
