"""A class joining at once while a worker writes records (issue 21, item 5): every join gets
its token, on SQLite and on PostgreSQL; writes wait for each other instead of failing."""

from __future__ import annotations

import asyncio
import time

import httpx

from agent.records import RecordsStore
from agent.records.models import SessionStarted, TurnRecord
from harness.databases import RecordsDatabase
from harness.web import open_site

STUDENTS = 200


async def write_records_until(store: RecordsStore, done: asyncio.Event) -> int:
    """A worker's record writer, as busy as it gets: a batch after a batch."""
    batches = 0
    while not done.is_set():
        session = f"busy-{batches}"
        turns = [
            TurnRecord(
                session, f"t{i}", "student" if i % 2 else "math", "seven eights", time.time()
            )
            for i in range(20)
        ]
        await store.write([SessionStarted(session, "kid", "room"), *turns])
        batches += 1
    return batches


async def test_a_whole_class_joining_while_records_are_written_all_get_in(
    database: RecordsDatabase,
) -> None:
    rate = f"{STUDENTS * 2}/minute"
    async for site in open_site(database, production_store=True, web_token_rate_limit=rate):
        code = site.school.rivera_class.code
        worker_store = RecordsStore(database.url)  # a worker's own, as in production
        done = asyncio.Event()
        writing = asyncio.create_task(write_records_until(worker_store, done))
        try:
            limits = httpx.Limits(max_connections=STUDENTS)
            async with httpx.AsyncClient(base_url=site.url, limits=limits, timeout=60) as client:
                answers = await asyncio.gather(
                    *(
                        client.post("/api/token", json={"code": code, "name": "Maya"})
                        for i in range(STUDENTS)
                    )
                )
        finally:
            done.set()
            batches = await writing
            await worker_store.aclose()
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == STUDENTS, {s: statuses.count(s) for s in set(statuses)}
        assert batches > 0  # the records really were being written meanwhile
