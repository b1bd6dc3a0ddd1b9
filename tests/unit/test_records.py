"""Session records on real databases (a SQLite file and a PostgreSQL server): whole ordered
transcripts across workers, handoffs and fallbacks, outages, retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.dispatch.metadata import dispatch_metadata
from agent.records import RecordsStore, RecordWriter
from agent.records.models import SessionStarted, TurnRecord
from agent.records.retention import purge
from harness.databases import RecordsDatabase
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import Reply, call, say
from harness.fakes.room import RoomHub
from harness.rosters import ANNOUNCEMENTS

WAIT = 10.0
GREETING = "Hi! What would you like to learn?"
SEVEN_EIGHTS = "What is seven times eight?"
NOUN = "What is a noun?"
VERB = "And what is a verb?"
NAPOLEON = "Who was Napoleon?"


@asynccontextmanager
async def recorded_class(
    database: RecordsDatabase, scripts: Mapping[str, Sequence[Reply]], **options: Any
) -> AsyncIterator[tuple[Cluster, Job, RecordsStore]]:
    """A cluster recording into `database`, with the student's orchestrator job greeted."""
    store = database.store()
    scripts = {**scripts, "orchestrator": [say(GREETING), *scripts.get("orchestrator", ())]}
    cluster = Cluster(RoomHub(), scripts, records=store, **options)
    job = await cluster.start_job(
        ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student="kid-1")
    )
    await asyncio.wait_for(job.spoke.wait(), WAIT)
    try:
        yield cluster, job, store
    finally:
        await cluster.close()
        await store.aclose()


def spoken(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["speaker"], t["text"]) for t in doc["turns"]]


async def test_an_in_session_conversation_is_one_ordered_transcript(
    database: RecordsDatabase,
) -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=SEVEN_EIGHTS)],
        "math": [say("Seven times eight is fifty-six.")],
    }
    async with recorded_class(database, scripts) as (cluster, job, store):
        await job.session.run(user_input=SEVEN_EIGHTS)
        await cluster.said(job, "Seven times eight is fifty-six.")
        await cluster.close()
        doc = await store.export("s-1")

    assert doc is not None
    assert spoken(doc) == [
        ("orchestrator", GREETING),
        ("student", SEVEN_EIGHTS),
        # the handoff line is the outgoing tutor's, though the incoming session spoke it
        ("orchestrator", ANNOUNCEMENTS["math"]),
        ("math", "Seven times eight is fifty-six."),
    ]
    assert [t["sequence"] for t in doc["turns"]] == [1, 2, 3, 4]
    assert {t["worker"] for t in doc["turns"]} == {ORCHESTRATOR_WORKER}
    [handoff] = doc["handoffs"]
    assert (handoff["from"], handoff["to"], handoff["mode"], handoff["outcome"]) == (
        "orchestrator",
        "math",
        "in_session",
        "completed",
    )
    assert handoff["question"] == SEVEN_EIGHTS
    session = doc["session"]
    assert (session["student"], session["ended_at"] is not None) == ("kid-1", True)


def two_round_trips() -> dict[str, list[Reply]]:
    """Orchestrator -> English -> orchestrator -> English -> orchestrator -> History."""
    return {
        "orchestrator": [
            call("route_to_english", question_summary=NOUN),
            call("route_to_english", question_summary=VERB),  # the returning orchestrator
            call("route_to_history", question_summary=NAPOLEON),  # the second returning one
        ],
        "english_rt": [
            say("A noun names a thing."),
            call("route_back_to_orchestrator", reason=VERB),
            say("A verb is a doing word."),
            call("route_back_to_orchestrator", reason=NAPOLEON),
        ],
        "history": [say("Napoleon was a French emperor.")],
    }


async def test_two_english_round_trips_are_one_transcript_under_one_session(
    database: RecordsDatabase,
) -> None:
    async with recorded_class(database, two_round_trips()) as (cluster, first, store):
        await first.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await cluster.said(english, "A noun names a thing.")
        await asyncio.wait_for(first.ended.wait(), WAIT)  # left, its records flushed
        midway = await store.export("s-1")
        assert midway is not None and midway["session"]["ended_at"] is None  # still going
        await english.session.run(user_input=VERB)
        back = await cluster.job(ORCHESTRATOR_WORKER, 2)
        english2 = await cluster.job(ENGLISH_WORKER, 2)
        await cluster.said(english2, "A verb is a doing word.")
        await english2.session.run(user_input=NAPOLEON)
        last = await cluster.job(ORCHESTRATOR_WORKER, 3)
        await cluster.said(last, "Napoleon was a French emperor.")
        assert back.end_reason.startswith("handed over")
        await cluster.close()
        doc = await store.export("s-1")

    assert doc is not None
    assert spoken(doc) == [
        ("orchestrator", GREETING),
        ("student", NOUN),
        ("orchestrator", ANNOUNCEMENTS["english"]),
        ("english", "A noun names a thing."),
        ("student", VERB),
        ("english", ANNOUNCEMENTS["orchestrator"]),
        ("orchestrator", ANNOUNCEMENTS["english"]),
        ("english", "A verb is a doing word."),
        ("student", NAPOLEON),
        ("english", ANNOUNCEMENTS["orchestrator"]),
        ("orchestrator", ANNOUNCEMENTS["history"]),
        ("history", "Napoleon was a French emperor."),
    ]
    workers = [t["worker"] for t in doc["turns"]]
    assert workers.count(ENGLISH_WORKER) == 6 and workers.count(ORCHESTRATOR_WORKER) == 6
    moves = [(h["from"], h["to"], h["mode"], h["outcome"]) for h in doc["handoffs"]]
    assert moves == [
        ("orchestrator", "english", "cross_worker", "handed_over"),
        ("english", "orchestrator", "cross_worker", "handed_over"),
        ("orchestrator", "english", "cross_worker", "handed_over"),
        ("english", "orchestrator", "cross_worker", "handed_over"),
        ("orchestrator", "history", "in_session", "completed"),
    ]
    assert all(h["ready_after_s"] is not None for h in doc["handoffs"][:4])
    # the session ended once, when the last job's session closed; handovers did not end it
    assert doc["session"]["end_reason"] == "user_initiated"


async def test_a_crossing_that_falls_back_is_recorded_with_its_outcome(
    database: RecordsDatabase,
) -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english": [say("A noun is a naming word.")],
    }
    options = {"unready_workers": {ENGLISH_WORKER}}
    async with recorded_class(database, scripts, **options) as (cluster, job, store):
        job.session.userdata.crossing.ready_timeout = 0.3
        await job.session.run(user_input=NOUN)
        await job.session.userdata.crossing.wait_idle()
        await cluster.said(job, "A noun is a naming word.")
        await cluster.close()
        doc = await store.export("s-1")

    assert doc is not None
    [handoff] = doc["handoffs"]
    assert (handoff["to"], handoff["mode"], handoff["outcome"]) == (
        "english",
        "cross_worker",
        "fallback_not_ready",
    )
    # the pipeline English tutor answered in the same session, and the transcript says so
    assert spoken(doc)[-1] == ("english", "A noun is a naming word.")


async def test_a_database_outage_mid_session_loses_nothing_once_it_is_back(
    database: RecordsDatabase,
) -> None:
    scripts = {
        "orchestrator": [say("Let us count."), say("Two and two make four.")],
    }
    async with recorded_class(database, scripts) as (cluster, job, store):
        await job.session.run(user_input="Can we count?")
        assert job.writer is not None and await job.writer.flush(WAIT)
        database.cut()
        # the conversation goes on while nothing can be written
        await job.session.run(user_input="What is two and two?")
        await cluster.said(job, "Two and two make four.")
        # what was said meanwhile cannot be written yet, and is kept
        assert not await job.writer.flush(timeout=1.0)
        assert job.writer.failures > 0 and job.writer.pending > 0
        database.restore()
        assert await job.writer.flush(WAIT)
        await cluster.close()
        doc = await store.export("s-1")

    assert doc is not None
    assert spoken(doc) == [
        ("orchestrator", GREETING),
        ("student", "Can we count?"),
        ("orchestrator", "Let us count."),
        ("student", "What is two and two?"),
        ("orchestrator", "Two and two make four."),
    ]
    assert job.writer.dropped == 0


async def test_a_retried_batch_is_not_written_twice(database: RecordsDatabase) -> None:
    store = database.store()
    try:
        batch = [
            SessionStarted("s-9", "kid-9", "room-9"),
            TurnRecord("s-9", "item-1", "student", "Hello", at=1_700_000_000.0),
        ]
        await store.write(batch)
        await store.write(batch)  # as after a commit whose answer was lost
        doc = await store.export("s-9")
    finally:
        await store.aclose()
    assert doc is not None and spoken(doc) == [("student", "Hello")]


async def test_purge_deletes_old_sessions_with_everything_under_them(
    database: RecordsDatabase,
) -> None:
    store = database.store()
    now = datetime.now(UTC)
    old = (now - timedelta(days=40)).timestamp()
    recent = (now - timedelta(days=2)).timestamp()
    try:
        await store.write(
            [
                SessionStarted("old", "kid-1", "room", at=old),
                TurnRecord("old", "i1", "student", "old words", at=old),
                SessionStarted("new", "kid-1", "room", at=recent),
                TurnRecord("new", "i2", "student", "new words", at=recent),
            ]
        )
        assert await purge(store, older_than_days=30) == 1
        assert await store.export("old") is None
        kept = await store.export("new")
        assert [s.id for s in await store.list_sessions()] == ["new"]
    finally:
        await store.aclose()
    assert kept is not None and spoken(kept) == [("student", "new words")]


async def test_a_full_buffer_and_an_unreachable_store_at_job_end_are_counted() -> None:
    store = RecordsStore("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    writer = RecordWriter(store, max_buffer=2, retry_base=0.01, retry_max=0.02)
    try:
        for n in range(3):
            writer.submit(SessionStarted(f"s-{n}", "kid", "room"))
        assert (writer.pending, writer.dropped) == (2, 1)
        await writer.aclose(timeout=0.3)
    finally:
        await store.aclose()
    assert writer.dropped == 3 and writer.failures >= 1 and writer.pending == 0


async def test_info_logs_never_carry_the_childs_words(
    database: RecordsDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my secret question about seven times eight"
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=secret)],
        "math": [say("Fifty-six.")],
    }
    with caplog.at_level(logging.INFO):
        async with recorded_class(database, scripts) as (cluster, job, _store):
            await job.session.run(user_input=secret)
            await cluster.said(job, "Fifty-six.")
    logged = [
        (r.getMessage(), {k: v for k, v in vars(r).items() if k not in ("msg", "args")})
        for r in caplog.records
        if r.levelno >= logging.INFO
    ]
    assert logged  # the conversation did log (handoff, tutor entered, ...)
    assert not [entry for entry in logged if "secret question" in repr(entry)]


async def test_the_migrations_build_exactly_the_tables_the_models_declare(
    database: RecordsDatabase,
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from agent.records.schema import Base

    store = database.store()
    try:
        await store.ensure_schema()
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await store.aclose()
    assert differences == []


async def test_a_jobs_last_records_are_written_when_the_framework_shuts_it_down(
    database: RecordsDatabase,
) -> None:
    """`job_writer`'s shutdown callback, called the way the framework's job process calls
    every one (with the shutdown reason), writes what the job still holds."""
    from livekit.agents.testing import fake_job_context

    from agent.config.settings import load_settings
    from agent.workers.resources import job_writer, resources_of

    settings = load_settings(records_url=database.url)
    store = database.store()
    try:
        with fake_job_context() as ctx:
            resources_of(ctx.proc).store = store
            writer = job_writer(ctx, settings)
            assert writer is not None
            writer.submit(SessionStarted("s-end", "kid-1", "room"))
            writer.submit(TurnRecord("s-end", "i1", "student", "bye", at=1_790_000_000.0))
            # livekit.agents.ipc.job_proc_lazy_main: `await callback(shutdown_info.reason)`
            for callback in ctx._shutdown_callbacks:
                await callback("student left")
        exported = await store.export("s-end")
    finally:
        await store.aclose()
    assert exported is not None and spoken(exported) == [("student", "bye")]


async def test_upgrading_a_school_keeps_its_teachers_classes_and_visits(
    database: RecordsDatabase,
) -> None:
    """0003 copies the teachers table (SQLite) and replaces two foreign keys: a school's
    rows written under 0002 all come through, and sign-ins start at version 1."""
    from datetime import datetime

    from sqlalchemy import select, text

    from agent.records.schema import ClassRow, TeacherRow, VisitRow
    from agent.records.store import upgrade_schema

    at = datetime(2026, 11, 30, 9, 0)
    store = database.store()
    try:
        async with store.engine.connect() as conn:
            await conn.run_sync(lambda sync: upgrade_schema(sync, "0002"))
            await conn.commit()
            await conn.invalidate()
        # the tables as 0002 made them (the models already have 0003's columns)
        async with store.engine.begin() as conn:
            for name in ("rivera", "okafor"):
                await conn.execute(
                    text(
                        "INSERT INTO teachers (username, display_name, password_hash, role, "
                        "created_at) VALUES (:name, :name, 'x', 'teacher', :at)"
                    ),
                    {"name": name, "at": at},
                )
            await conn.execute(
                text(
                    "INSERT INTO classes (code, name, teacher_id, is_open, created_at) "
                    "VALUES ('MAPLE4', 'Maple', 2, true, :at)"
                ),
                {"at": at},
            )
            await conn.execute(
                text(
                    "INSERT INTO visits (session_id, class_id, student_name, identity, room, "
                    "created_at, dispatches, last_dispatch_at) "
                    "VALUES ('s-1', 1, 'Maya', 'maya-1', 'r', :at, 1, :at)"
                ),
                {"at": at},
            )
        await store.ensure_schema()
        async with store.engine.connect() as conn:
            teachers = (
                await conn.execute(
                    select(TeacherRow.id, TeacherRow.username, TeacherRow.session_version)
                )
            ).all()
            classes = (await conn.execute(select(ClassRow.code, ClassRow.teacher_id))).all()
            visits = (await conn.execute(select(VisitRow.session_id, VisitRow.class_id))).all()
    finally:
        await store.aclose()
    assert sorted(teachers) == [(1, "rivera", 1), (2, "okafor", 1)]
    assert classes == [("MAPLE4", 2)]
    assert visits == [("s-1", 1)]
