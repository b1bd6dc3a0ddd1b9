"""The real-server tier: a real LiveKit server, both workers as processes, real students.

Every test here is marked `realserver` and runs on the session's event loop (each module
says so: the server, the model fake and the workers are started once). In CI (`CI` set) a stack that
cannot run is a failure; elsewhere the tier is skipped with the reason. Run it locally with

    ../shared/livekit-server/in-netns.sh uv run pytest -m realserver
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from livekit import api
from playwright.async_api import Browser, async_playwright

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from harness import realserver
from harness.page import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    FAKE_MICROPHONE,
    build_student_script,
)
from harness.realserver import (
    LiveKitServer,
    ModelFake,
    Process,
    ask,
    wait_until_empty,
)
from harness.student import Student, join

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.realserver)


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    problem = realserver.realserver_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the real-server tier must run in CI: {problem}")
        pytest.skip(problem)
    with realserver.run_directory() as path:
        print(f"\nreal-server logs: {path}")
        yield path


@pytest.fixture(scope="session")
def webhook_port() -> int:
    """The port of the web service that gets the server's webhooks (`web(webhooks=True)`)."""
    return realserver.free_port()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def livekit(run_dir: Path, webhook_port: int) -> AsyncIterator[LiveKitServer]:
    webhook = f"http://127.0.0.1:{webhook_port}/api/livekit/webhook"
    server = await realserver.start_livekit(run_dir, webhook=webhook)
    yield server
    await server.process.stop()


@pytest.fixture(scope="session")
def models(run_dir: Path) -> Iterator[ModelFake]:
    fake = ModelFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def env(livekit: LiveKitServer, models: ModelFake, run_dir: Path) -> dict[str, str]:
    return realserver.stack_env(livekit, models, run_dir)


@dataclass
class Workers:
    orchestrator: Process
    english: Process

    def logs(self) -> list[Path]:
        return [self.orchestrator.log, self.english.log]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def workers(env: dict[str, str], run_dir: Path) -> AsyncIterator[Workers]:
    orchestrator = await realserver.start_worker("learning-orchestrator", env, run_dir)
    english = await realserver.start_worker("learning-english", env, run_dir)
    yield Workers(orchestrator, english)
    for process in (orchestrator, english):
        await process.stop()


@pytest.fixture(scope="session")
def speech_dir(run_dir: Path) -> Path:
    folder = run_dir / "speech"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def lk_settings(env: dict[str, str]) -> LiveKitSettings:
    return LiveKitSettings(
        livekit_url=env["LIVEKIT_URL"],
        livekit_api_key=env["LIVEKIT_API_KEY"],
        livekit_api_secret=env["LIVEKIT_API_SECRET"],
    )


@pytest_asyncio.fixture(loop_scope="session")
async def server_api(livekit: LiveKitServer) -> AsyncIterator[api.LiveKitAPI]:
    lk = api.LiveKitAPI(livekit.http_url, realserver.API_KEY_ID, realserver.API_SECRET)
    yield lk
    await lk.aclose()


@dataclass
class Classroom:
    """The running stack as a test uses it: students join rooms of their own (left at the
    end), ask questions the fake STT will hear, and the server's API says who is left."""

    livekit: LiveKitServer
    settings: LiveKitSettings
    models: ModelFake
    speech_dir: Path
    server_api: api.LiveKitAPI
    workers: Workers
    joined: list[Student] = field(default_factory=list)

    async def join(
        self, room: str, identity: str = "maya", session_id: str | None = None
    ) -> Student:
        token = student_token(self.settings, room=room, identity=identity, session_id=session_id)
        student = await join(self.livekit.url, token, identity)
        self.joined.append(student)
        return student

    async def ask(self, student: Student, question: str) -> float:
        return await ask(student, self.models, self.speech_dir, question)

    async def until_empty(self, room: str) -> float:
        return await wait_until_empty(self.server_api, room)


@pytest_asyncio.fixture(loop_scope="session")
async def classroom(
    livekit: LiveKitServer,
    lk_settings: LiveKitSettings,
    models: ModelFake,
    speech_dir: Path,
    server_api: api.LiveKitAPI,
    workers: Workers,
) -> AsyncIterator[Classroom]:
    models.questions.queue.clear()
    room = Classroom(livekit, lk_settings, models, speech_dir, server_api, workers)
    yield room
    for student in room.joined:
        if student.room.isconnected():
            await student.leave()


@pytest.fixture(scope="session")
def page_script() -> Path:
    """The student page's script, built once (the page tests use it)."""
    return build_student_script()


@pytest_asyncio.fixture(loop_scope="session")
async def chromium_with(page_script: Path) -> AsyncIterator:  # type: ignore[type-arg]
    """`await chromium_with(wav)`: Chromium whose microphone plays `wav`."""
    async with async_playwright() as playwright:
        launched: list[Browser] = []

        async def launch(wav: Path) -> Browser:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    *CHROMIUM_FLAGS,
                    *FAKE_MICROPHONE,
                    f"--use-file-for-fake-audio-capture={wav}",
                ],
            )
            launched.append(browser)
            return browser

        yield launch
        for browser in launched:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def web(env: dict[str, str], run_dir: Path, webhook_port: int) -> AsyncIterator:  # type: ignore[type-arg]
    """`await web(**settings)`: the web service as a process, with these settings;
    `webhooks=True`: on the port the server posts its webhooks to (one such at a time)."""
    started: list[Process] = []

    async def start(*, webhooks: bool = False, **overrides: str) -> str:
        port = webhook_port if webhooks else realserver.free_port()
        settings = {"LIVEKIT_PUBLIC_URL": env["LIVEKIT_URL"]} | overrides
        started.append(await realserver.start_web(env | settings, run_dir, port))
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        await process.stop()
