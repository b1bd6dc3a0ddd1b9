"""`python -m bench live`: how soon a teacher's live page hears of a change, and what the
pages cost the web service.

The web service runs as a process (`python -m agent web`) on a records store with a class
of `--students` students, each talking to a tutor; `--watchers` signed-in browsers of the
class's teacher hold its live page's event stream open (read as an EventSource does). A
driver then plays the class for `--seconds`: about one change per student every
`--every` seconds, round the class in turn: the workers' records (a student's turn, a
handoff, a flag) and the server's webhooks (the student's connection lost, then back),
signed as LiveKit signs them. For each change and each page it takes the time from the
record's commit (or the webhook's sending) to the page's first event showing it, and the
web service's CPU (user + system) over the same stretch, beside its CPU with the same pages
open and nothing happening. SQLite and PostgreSQL side by side (PostgreSQL where Debian's
server is installed, or `TEST_POSTGRES_URL` names one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from agent.config.settings import LiveKitSettings
from agent.records import RecordsStore
from agent.records.models import FlagRecord, HandoffRecord, SessionStarted, TurnRecord
from agent.web.accounts import add_teacher
from agent.web.classes import Join, create_class, join_class
from harness import postgres, realserver
from harness.databases import create_database, drop_database
from harness.report import percentile, report, table
from harness.web import PASSWORD, EventStream, event_stream, livekit_webhook, room_event, sign_in

API_KEY = "bench-live"
TUTORS = ("math", "history", "orchestrator")
IDLE_SECONDS = 5.0
NAMES = ("Maya", "Leo", "Ada", "Sam", "Noor", "Ivan", "Zoe", "Omar", "Lena", "Kai")
NOTES = """\
Latency is from the change's commit (a record) or the webhook's sending to the first event
on each open page that shows it; every change is counted on every page. SQLite is read by
polling the change feed every 0.25 s; PostgreSQL wakes the feed with `NOTIFY`. The web
service's CPU is user + system time over wall time, in % of one core: "idle" with the pages
open and nothing happening, "busy" while the class plays."""


@dataclass
class Change:
    """One change the driver made, and what shows it on a page."""

    kind: str  # "record" or "webhook"
    at: float  # monotonic, when it was committed (or sent)
    shows: Callable[[str, dict[str, Any]], bool]  # (event name, data) -> it is on the page


@dataclass
class Page:
    """One open live page: each event it got, with when."""

    stream: EventStream
    got: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    async def follow(self) -> None:
        with contextlib.suppress(EOFError, httpx.HTTPError, asyncio.CancelledError):
            while True:
                event = await self.stream.next(timeout=3600)
                self.got.append((time.monotonic(), event.name, event.data))

    def latency(self, change: Change) -> float | None:
        for at, name, data in self.got:
            if at >= change.at and change.shows(name, data):
                return at - change.at
        return None


@dataclass
class Student:
    joined: Join
    turns: int = 0
    flags: int = 0
    tutor: int = 0
    away: bool = False
    changes: int = 0
    offset: int = 0  # where in the six this student starts: the class's changes are mixed


@dataclass
class Result:
    backend: str
    changes: int
    records: list[float]
    webhooks: list[float]
    lost: int
    idle_cpu: float
    busy_cpu: float


def row_of(session_id: str, good: Callable[[dict[str, Any]], bool]) -> Callable[..., bool]:
    return lambda name, data: name == "student" and data["session_id"] == session_id and good(data)


async def seed(store: RecordsStore, settings: LiveKitSettings, students: int) -> tuple[str, list]:
    """A teacher, their class and `students` students talking to their tutors."""
    await store.ensure_schema()
    teacher = await add_teacher(store, f"t{secrets.token_hex(3)}", PASSWORD)
    code = (await create_class(store, teacher.id, "Year 4 Maple")).code
    class_ = []
    for n in range(students):
        joined = await join_class(store, settings, code, NAMES[n % len(NAMES)])
        await store.write([SessionStarted(joined.session_id, joined.identity, joined.room)])
        class_.append(Student(joined, offset=n))
    return teacher.username, code, class_


async def drive(
    store: RecordsStore, http: httpx.AsyncClient, secret: str, student: Student
) -> Change:
    """The student's next change: of every six, three turns, a handoff, a flag, and their
    connection lost or back."""
    joined, sid = student.joined, student.joined.session_id
    kind = (student.changes + student.offset) % 6
    student.changes += 1
    if kind in (0, 2, 4):  # the student says something
        student.turns += 1
        turns = student.turns
        turn = TurnRecord(sid, f"s{turns}", "student", "", time.time())
        await store.write([turn])
        return Change("record", time.monotonic(), row_of(sid, lambda d: d["turns"] >= turns))
    if kind == 1:  # a handoff
        student.tutor += 1
        to = TUTORS[student.tutor % len(TUTORS)]
        handoff = HandoffRecord(
            sid, f"h{student.tutor}", "orchestrator", to, "in_session", "completed", "", time.time()
        )
        await store.write([handoff])
        return Change("record", time.monotonic(), row_of(sid, lambda d: d["subjects"] != []))
    if kind == 3:  # a flag
        student.flags += 1
        flags = student.flags
        flag = FlagRecord(sid, f"f{flags}", "student", "concern", ["harassment"], {}, "l", "")
        await store.write([flag])
        return Change("record", time.monotonic(), row_of(sid, lambda d: d["flags"] >= flags))
    # the connection lost, or back
    student.away = not student.away
    event = room_event(
        "participant_left" if student.away else "participant_joined",
        joined.room,
        joined.identity,
    )
    status = "reconnecting" if student.away else "talking"
    at = time.monotonic()
    answer = await http.post("/api/livekit/webhook", **livekit_webhook(API_KEY, secret, event))
    answer.raise_for_status()
    return Change("webhook", at, row_of(sid, lambda d: d["status"] == status))


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(backend: str, url: str, args: argparse.Namespace, run_dir: Path) -> Result:
    secret = secrets.token_urlsafe(32)
    settings = LiveKitSettings(
        livekit_url="ws://127.0.0.1:9", livekit_api_key=API_KEY, livekit_api_secret=secret
    )
    store = RecordsStore(url)
    try:
        username, code, class_ = await seed(store, settings, args.students)
        port = realserver.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "WEB_"))}
        env |= {
            "RECORDS_URL": url,
            "LIVEKIT_URL": settings.livekit_url,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": secret,
            "WEB_SESSION_SECRET": secrets.token_urlsafe(32),
            "WEB_SECURE_COOKIES": "false",
        }
        web = await realserver.start_web(env, run_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with contextlib.AsyncExitStack() as stack:
                http = await stack.enter_async_context(httpx.AsyncClient(base_url=base))
                for student in class_:
                    for who, agent in ((student.joined.identity, False), ("tutor", True)):
                        event = room_event(
                            "participant_joined", student.joined.room, who, agent=agent
                        )
                        await http.post(
                            "/api/livekit/webhook", **livekit_webhook(API_KEY, secret, event)
                        )
                pages = [await open_page(stack, base, username, code) for _ in range(args.watchers)]
                followers = [asyncio.create_task(page.follow()) for page in pages]
                process = psutil.Process(web.popen.pid)
                idle_from, idle_cpu = time.monotonic(), cpu_seconds(process)
                await asyncio.sleep(IDLE_SECONDS)  # a measured stretch of nothing happening
                idle = (cpu_seconds(process) - idle_cpu) / (time.monotonic() - idle_from)
                busy_from, busy_cpu = time.monotonic(), cpu_seconds(process)
                made = await play(store, http, secret, class_, args)
                busy = (cpu_seconds(process) - busy_cpu) / (time.monotonic() - busy_from)
                await settle(pages, made)
                for task in followers:
                    task.cancel()
                await asyncio.gather(*followers)
        finally:
            await web.stop()
    finally:
        await store.aclose()
    records: list[float] = []
    webhooks: list[float] = []
    lost = 0
    for change in made:
        for page in pages:
            took = page.latency(change)
            if took is None:
                lost += 1
            else:
                (records if change.kind == "record" else webhooks).append(took)
    return Result(backend, len(made), records, webhooks, lost, idle * 100, busy * 100)


async def play(
    store: RecordsStore,
    http: httpx.AsyncClient,
    secret: str,
    class_: list[Student],
    args: argparse.Namespace,
) -> list[Change]:
    """The class's changes, round the class, one every `every / students` seconds for
    `seconds`."""
    gap = args.every / len(class_)
    made: list[Change] = []
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < args.seconds:
        made.append(await drive(store, http, secret, class_[step % len(class_)]))
        step += 1
        if (wait := start + step * gap - time.monotonic()) > 0:
            await asyncio.sleep(wait)  # the class's pace, not coordination
    return made


async def settle(pages: list[Page], made: list[Change], timeout: float = 10.0) -> None:
    """Until every page has shown every change, or `timeout` seconds (then the rest count
    as not shown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(page.latency(change) is not None for page in pages for change in made[-20:]):
            return
        await asyncio.sleep(0.1)


async def open_page(stack: contextlib.AsyncExitStack, base: str, username: str, code: str) -> Page:
    """A signed-in teacher's browser with the class's live page open (its `state` read)."""
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))
    assert await sign_in(client, username) == 303
    stream = await stack.enter_async_context(
        event_stream(client, f"/teacher/classes/{code}/live/events")
    )
    first = await stream.next(timeout=30)
    assert first.name == "state", first
    return Page(stream)


@contextlib.asynccontextmanager
async def backends(names: list[str], run_dir: Path) -> AsyncIterator[list[tuple[str, str]]]:
    """(name, records URL) of each backend asked for that can run here."""
    found = []
    async with contextlib.AsyncExitStack() as stack:
        if "sqlite" in names:
            found.append(("SQLite", f"sqlite+aiosqlite:///{run_dir / 'live.db'}"))
        if "postgresql" in names:
            url = os.environ.get("TEST_POSTGRES_URL")
            if url is None:
                try:
                    postgres.bin_dir()
                except postgres.PostgresUnavailable as missing:
                    print(f"bench live: no PostgreSQL ({missing})", file=sys.stderr)
                else:
                    data = Path(tempfile.mkdtemp(prefix="bench-live-pg-"))
                    url = postgres.start(data)
                    stack.callback(postgres.stop, data)
            if url is not None:
                database = f"bench_live_{secrets.token_hex(4)}"
                found.append(("PostgreSQL", await create_database(url, database)))
                stack.push_async_callback(drop_database, url, database)
        yield found


def summary(results: list[Result], args: argparse.Namespace) -> str:
    rows = []
    for r in results:
        rows.append(
            (
                r.backend,
                r.changes,
                f"{percentile(r.records, 50):.3f}",
                f"{percentile(r.records, 95):.3f}",
                f"{percentile(r.webhooks, 50):.3f}",
                f"{percentile(r.webhooks, 95):.3f}",
                r.lost,
                f"{r.idle_cpu:.1f}",
                f"{r.busy_cpu:.1f}",
            )
        )
    headers = (
        "records",
        "changes",
        "record → page p50 s",
        "p95 s",
        "webhook → page p50 s",
        "p95 s",
        "not shown",
        "web CPU idle %",
        "web CPU busy %",
    )
    size = (
        f"{args.students} students, {args.watchers} pages open, a change per student every "
        f"{args.every:g} s for {args.seconds:g} s"
    )
    return size + "\n\n" + table(headers, rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench live", description=__doc__)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--watchers", type=int, default=5, help="live pages open")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--every", type=float, default=6.0, help="seconds between a student's changes"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument("--quick", action="store_true", help="CI size: 10 s")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 10.0
    names = [name.strip().lower() for name in args.backends.split(",") if name.strip()]
    with realserver.run_directory() as run_dir:
        print(f"logs: {run_dir}", file=sys.stderr)

        async def run_all() -> list[Result]:
            async with backends(names, run_dir) as chosen:
                return [await measure(name, url, args, run_dir) for name, url in chosen]

        results = asyncio.run(run_all())
    if not results:
        print("bench live: no records backend to measure", file=sys.stderr)
        return 2
    report(
        "The live view: from a record or webhook to the teacher's page",
        summary(results, args),
        append=not args.no_append,
        notes=NOTES,
    )
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
