"""The web service for tests: served in-process on a real loopback port, with a seeded
school (teachers, classes, a student's session with a flag and its alert)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from google.protobuf.json_format import MessageToJson
from livekit import api
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from agent.config.settings import WebSettings, load_settings
from agent.records import RecordsStore
from agent.records.models import (
    AlertRecord,
    FlagRecord,
    HandoffRecord,
    SessionEnded,
    SessionStarted,
    TurnRecord,
)
from agent.web.accounts import Teacher, add_teacher
from agent.web.app import create_app
from agent.web.classes import SchoolClass, create_class, join_class
from agent.web.deployment import server_options
from harness.databases import RecordsDatabase

PASSWORD = "correct horse battery"
SESSION_SECRET = "test-session-secret-of-at-least-32-chars"
STARTED_AT = 1_790_000_000.0  # 2026-09-21, a fixed day for seeded sessions


def web_settings(records_url: str, **overrides: Any) -> WebSettings:
    return load_settings(
        WebSettings,
        records_url=records_url,
        web_session_secret=SESSION_SECRET,
        **overrides,
    )


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(settings: WebSettings, store: RecordsStore) -> AsyncIterator[str]:
    """The app on a loopback port; yields its base URL. The socket listens before the app
    starts, so a client connecting early is simply queued until it accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, store),
        log_level="warning",
        lifespan="on",
        access_log=False,
        **server_options(settings),  # the proxies it believes, as `python -m agent web`
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@dataclass
class Site:
    """The app served on the seeded school's store."""

    url: str
    store: RecordsStore
    settings: WebSettings
    school: School

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)


async def open_site(
    database: RecordsDatabase, *, production_store: bool = False, **overrides: Any
) -> AsyncIterator[Site]:
    """Seed a school in `database` and serve the app on it (an async generator: `async
    for site in open_site(...)`, one site). `production_store`: the store as the service
    opens it (its own busy timeout), not the tests' fail-fast one."""
    settings = web_settings(database.url, **overrides)
    store = RecordsStore(database.url) if production_store else database.store()
    try:
        school = await seed_school(store, settings)
        async with serving(settings, store) as url:
            yield Site(url, store, settings, school)
    finally:
        await store.aclose()


@dataclass
class School:
    """Two teachers with a class each, a safeguarding lead, and one seeded session in the
    first teacher's class (a flagged student turn with its alert)."""

    rivera: Teacher
    okafor: Teacher
    lead: Teacher
    rivera_class: SchoolClass
    okafor_class: SchoolClass
    session_id: str
    student: str = "Maya"
    flagged_words: str = "nobody would miss me"


async def seed_school(store: RecordsStore, settings: WebSettings) -> School:
    rivera = await add_teacher(store, "rivera", PASSWORD, display_name="Ms Rivera")
    okafor = await add_teacher(store, "okafor", PASSWORD, display_name="Mr Okafor")
    lead = await add_teacher(store, "lead", PASSWORD, role="safeguarding", display_name="Lead")
    rivera_class = await create_class(store, rivera.id, "Year 4 Maple")
    okafor_class = await create_class(store, okafor.id, "Year 5 Oak")
    joined = await join_class(store, settings, rivera_class.code, "Maya")
    await seed_session(store, joined.session_id, joined.identity, joined.room)
    return School(rivera, okafor, lead, rivera_class, okafor_class, joined.session_id)


async def seed_session(store: RecordsStore, session_id: str, identity: str, room: str) -> None:
    t = STARTED_AT
    await store.write(
        [
            SessionStarted(session_id, identity, room, at=t),
            TurnRecord(session_id, "g1", "orchestrator", "Hello! What shall we learn?", t + 1),
            TurnRecord(session_id, "s1", "student", "What is seven times eight?", t + 5),
            HandoffRecord(
                session_id,
                "h1",
                "orchestrator",
                "math",
                "in_session",
                "completed",
                "seven times eight",
                requested_at=t + 6,
                completed_at=t + 6.2,
            ),
            TurnRecord(session_id, "m1", "math", "Seven times eight is fifty-six.", t + 7),
            FlagRecord(
                session_id,
                "f1",
                "student",
                "urgent",
                ["self-harm"],
                {"self-harm": 0.93},
                "safeguarding_line",
                "nobody would miss me",
                at=t + 20,
                turn_item_id="s2",
            ),
            AlertRecord("a1", session_id, "f1", "safeguarding", "urgent", {}, at=t + 20),
            SessionEnded(session_id, "student_left", at=t + 95),
        ]
    )


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> int:
    """Sign in through the login form (CSRF token included); returns the final status."""
    page = await client.get("/teacher")
    csrf = csrf_from(page.text)
    response = await client.post(
        "/teacher/login", data={"username": username, "password": password, "csrf": csrf}
    )
    return response.status_code


def csrf_from(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@dataclass(frozen=True)
class PageEvent:
    """One Server-Sent Event as a browser's EventSource gets it."""

    name: str
    data: Any  # the JSON it carried (None: none)
    id: str = ""


class EventStream:
    """A teacher page's event stream, read as its EventSource does."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> PageEvent:
        """The next event (comments skipped), within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            name, data, event_id = "message", [], ""
            async for line in self._lines:
                if not line:
                    if data:
                        return PageEvent(name, json.loads("\n".join(data)), event_id)
                    name, event_id = "message", ""
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value
            raise EOFError("the stream ended")

    async def until(
        self, name: str, good: Callable[[Any], bool] = lambda _: True, timeout: float = 10.0
    ) -> PageEvent:
        """The first event called `name` whose data is `good`, within `timeout` seconds
        (what comes before it is passed over)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if event.name == name and good(event.data):
                    return event


@contextlib.asynccontextmanager
async def event_stream(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    """Open the stream at `path` as `client` (a teacher's signed-in browser)."""
    request = client.build_request("GET", path, headers=headers, timeout=None)
    response = await client.send(request, stream=True)
    try:
        yield EventStream(response)
    finally:
        await response.aclose()


def livekit_webhook(api_key: str, api_secret: str, event: WebhookEvent) -> dict[str, Any]:
    """What the LiveKit server posts for `event`: its JSON, and a token signed with the API
    key's secret carrying the body's SHA-256 (`httpx` request arguments)."""
    body = MessageToJson(event)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(api_key, api_secret).with_sha256(digest).to_jwt()
    return {"content": body, "headers": {"Authorization": token}}


def room_event(kind: str, room: str, identity: str = "", *, agent: bool = False) -> WebhookEvent:
    """A webhook event of `kind` (participant_joined, participant_left, room_finished)."""
    participant = ParticipantInfo(
        identity=identity,
        kind=ParticipantInfo.Kind.AGENT if agent else ParticipantInfo.Kind.STANDARD,
    )
    return WebhookEvent(
        event=kind,
        room=Room(name=room),
        participant=participant if identity else None,
        created_at=int(time.time()),
        id=f"EV_{secrets.token_hex(6)}",
    )
