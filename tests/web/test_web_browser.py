"""The web pages in a real headless Chromium (Debian's, driven by Playwright): a student
joins with a class code up to the LiveKit connection, teachers see only their own classes.

Each test saves screenshots of the pages it visits under `build/screenshots/` (or
`SCREENSHOT_DIR`) for a person to look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import api
from playwright.async_api import Browser, Page, async_playwright, expect

from agent.web.classes import set_class_open
from agent.web.teacher_data import views_of
from harness.databases import RecordsDatabase, open_database
from harness.page import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    CHROMIUM_INSTALLED,
    FAKE_MICROPHONE,
    PHONE,
    WAIT_MS,
    build_student_script,
    screenshot,
)
from harness.web import PASSWORD, Site, open_site, unused_port


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[RecordsDatabase]:
    """A SQLite records file: the pages read the store the same way on both backends,
    and `test_web_api.py` covers PostgreSQL."""
    async with open_database("sqlite", tmp_path=tmp_path, postgres_url=None) as db:
        yield db


class SilentServer:
    """A TCP port that accepts connections and never answers (a LiveKit server that
    hangs), so the page stays in its connecting state; `connected` is set on the first."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def _hold(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aexit__(self, *_exc: object) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()


@pytest.fixture(scope="session", autouse=True)
def student_script() -> Path:
    return build_student_script()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM_INSTALLED, f"{CHROMIUM} is missing: apt-get install chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS + FAKE_MICROPHONE
        )
        yield launched
        await launched.close()


def nowhere() -> str:
    """A LiveKit URL nothing listens on."""
    return f"ws://127.0.0.1:{unused_port()}"


async def join(page: Page, site: Site, code: str, name: str = "Maya") -> None:
    await page.goto(site.url + "/")
    await page.get_by_label("Class code").fill(code)
    await page.get_by_label("Your first name").fill(name)
    await page.get_by_role("button", name="Start").click()


async def test_a_student_joins_with_a_class_code_and_reaches_the_connecting_state(
    database: RecordsDatabase, browser: Browser
) -> None:
    server = SilentServer()
    async with server as livekit_url:
        async for site in open_site(database, livekit_public_url=livekit_url):
            page = await browser.new_page(viewport=PHONE)
            await page.goto(site.url + "/")
            await screenshot(page, "student-start")
            async with page.expect_response("**/api/token") as answer:
                await join(page, site, site.school.rivera_class.code.lower(), "Zoë")
            body = await (await answer.value).json()
            await expect(page.locator("body")).to_have_attribute("data-stage", "connecting")
            await expect(page.locator("#call")).to_be_visible()
            await screenshot(page, "student-connecting")
            # the browser really dials the LiveKit URL the service gave it
            await asyncio.wait_for(server.connected.wait(), WAIT_MS / 1000)

            assert body["url"] == livekit_url
            claims = api.TokenVerifier(
                site.settings.livekit_api_key,
                site.settings.livekit_api_secret.get_secret_value(),
            ).verify(body["token"])
            assert claims.name == "Zoë" and claims.identity == body["identity"]
            assert claims.video is not None and claims.video.room == body["room"]
            assert body["room"].startswith(site.school.rivera_class.code.lower() + "-")
            assert not claims.video.room_admin
            agents = claims.room_config.agents  # type: ignore[union-attr]
            assert [a.agent_name for a in agents] == ["learning-orchestrator"]

            await page.get_by_role("button", name="Leave").click()
            await expect(page.locator("#message")).to_contain_text("Goodbye")
            await expect(page.get_by_role("button", name="Start")).to_be_visible()


async def test_the_page_says_the_server_is_unreachable_instead_of_hanging(
    database: RecordsDatabase, browser: Browser
) -> None:
    async for site in open_site(database, livekit_public_url=nowhere()):
        page = await browser.new_page(viewport=PHONE)
        await join(page, site, site.school.rivera_class.code)
        message = page.locator("#message")
        await expect(message).to_contain_text("cannot reach the tutoring server", timeout=WAIT_MS)
        await expect(page.get_by_role("button", name="Start")).to_be_enabled()
        await screenshot(page, "student-unreachable")


async def test_a_wrong_or_closed_class_code_is_explained_on_the_page(
    database: RecordsDatabase, browser: Browser
) -> None:
    async for site in open_site(database, livekit_public_url=nowhere()):
        page = await browser.new_page(viewport=PHONE)
        await join(page, site, "NOPE42")
        await expect(page.locator("#message")).to_contain_text("We don't know that class code")
        await screenshot(page, "student-wrong-code")
        school = site.school
        await set_class_open(site.store, school.rivera.id, school.rivera_class.code, is_open=False)
        await join(page, site, school.rivera_class.code)
        await expect(page.locator("#message")).to_contain_text("This class is closed")
        await expect(page.locator("body")).to_have_attribute("data-stage", "join")


async def test_a_refused_microphone_is_explained_on_the_page(database: RecordsDatabase) -> None:
    async with async_playwright() as playwright:
        # no fake-UI flag: the permission prompt is answered "block"
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream"],
        )
        try:
            async for site in open_site(database, livekit_public_url=nowhere()):
                context = await browser.new_context(viewport=PHONE, permissions=[])
                page = await context.new_page()
                await join(page, site, site.school.rivera_class.code)
                await expect(page.locator("#message")).to_contain_text(
                    "We need your microphone", timeout=WAIT_MS
                )
                await screenshot(page, "student-microphone-refused")
        finally:
            await browser.close()


async def sign_in(page: Page, site: Site, username: str) -> None:
    await page.goto(site.url + "/teacher")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_a_teacher_creates_a_class_and_reads_a_flagged_transcript_another_cannot(
    database: RecordsDatabase, browser: Browser
) -> None:
    async for site in open_site(database, livekit_public_url=nowhere()):
        school = site.school
        nobody = await browser.new_page()
        response = await nobody.goto(site.url + "/teacher")
        assert response is not None and response.status == 401
        await expect(nobody.get_by_label("Password")).to_be_visible()
        assert school.student not in await nobody.content()
        await screenshot(nobody, "teacher-sign-in")
        api_answer = await nobody.request.get(site.url + "/api/teacher/sessions")
        assert api_answer.status == 401

        rivera = await (await browser.new_context()).new_page()
        await sign_in(rivera, site, "rivera")
        await rivera.get_by_label("Class name").fill("Year 6 Birch")
        await rivera.get_by_role("button", name="Create class code").click()
        classes = rivera.locator("#classes")
        await expect(classes).to_contain_text("Year 6 Birch")
        flags = rivera.locator("#flags")
        await expect(flags.locator("tr.flag-urgent")).to_contain_text("Maya")
        await expect(flags).to_contain_text("safeguarding: pending")
        await screenshot(rivera, "teacher-home")
        await flags.get_by_role("link", name="Open").click()
        await expect(rivera.locator(".transcript")).to_contain_text("Seven times eight is")
        await expect(rivera.locator(".flags")).to_contain_text(school.flagged_words)
        await screenshot(rivera, "teacher-transcript")
        assert [who for who, _ in await views_of(site.store, school.session_id)] == ["rivera"]

        okafor = await (await browser.new_context()).new_page()
        await sign_in(okafor, site, "okafor")
        await expect(okafor.locator("#sessions")).not_to_contain_text("Maya")
        await expect(okafor.locator("#flags")).to_contain_text("No flagged conversations")
        await screenshot(okafor, "teacher-other-home")
        denied = await okafor.goto(f"{site.url}/teacher/sessions/{school.session_id}")
        assert denied is not None and denied.status == 404
        assert school.flagged_words not in await okafor.content()
        api_denied = await okafor.request.get(
            f"{site.url}/api/teacher/sessions/{school.session_id}"
        )
        assert api_denied.status == 404
        assert [who for who, _ in await views_of(site.store, school.session_id)] == ["rivera"]
