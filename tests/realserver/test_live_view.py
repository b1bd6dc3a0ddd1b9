"""The teacher's live page in Debian's Chromium on the real server, fed by the server's own
webhooks and the workers' records, with real `rtc` students: a student joining appears, a
handoff to Mathematics changes that row's tutor, a flagged turn appears as a flag (never its
words), a student who leaves disappears, and "End visit" ends the student's call, their
tutor and their dispatches, with the records saying the teacher ended it; closing the class
from the page does the same for a student on the student page, which says so.

The page's screenshot goes to `build/screenshots/realserver-live.png` (the README's copy is
`docs/live-view.png`)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from livekit import rtc
from playwright.async_api import Dialog, expect
from sqlalchemy import select

from agent.conversation.presence import VISIT_ENDED_TOPIC
from agent.records.schema import SessionRow, VisitRow
from agent.records.store import RecordsStore
from agent.safety.lines import TEACHER_ENDED_LINE
from harness import realserver
from harness.fakes.production import GREETING, SEVEN_EIGHTS, UPSET
from harness.page import open_page, screenshot, sign_in_page, teacher_with_class
from harness.realserver import TURN, session_of
from harness.student import join
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")
WAIT_MS = int(TURN * 1000)
DESKTOP = {"width": 1280, "height": 800}


async def student_joins(classroom: Classroom, url: str, code: str, name: str) -> tuple:
    """A real `rtc` student joins `code` through the web service (a visit, as the page
    does); returns them, the service's answer and their session id."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        answer = await http.post("/api/token", json={"code": code, "name": name})
    assert answer.status_code == 200, answer.text
    joined: dict[str, Any] = answer.json()
    student = await join(classroom.livekit.url, joined["token"], joined["identity"])
    classroom.joined.append(student)
    return student, joined, session_of(joined)


async def records_of(env: dict[str, str], session_id: str) -> tuple[Any, Any]:
    """(the session's end reason, the visit's end reason) in the stack's records."""
    store = RecordsStore(env["RECORDS_URL"])
    try:
        async with store.engine.connect() as conn:
            session = await conn.execute(
                select(SessionRow.end_reason).where(SessionRow.id == session_id)
            )
            visit = await conn.execute(
                select(VisitRow.end_reason).where(VisitRow.session_id == session_id)
            )
            return session.scalar(), visit.scalar()
    finally:
        await store.aclose()


async def test_the_live_page_follows_each_student_and_ends_a_visit(
    classroom: Classroom,
    env: dict[str, str],
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    url = await web(webhooks=True)
    username, code = await teacher_with_class(env)
    silence = realserver.microphone_wav(classroom.speech_dir, "teacher-silence", [], 1.0)
    browser = await chromium_with(silence)
    page = await browser.new_page(viewport=DESKTOP)
    await sign_in_page(page, url, username)
    await page.get_by_role("link", name="Live view").first.click()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # a student joining appears, and their tutor with them
    leo, leo_joined, leo_session = await student_joins(classroom, url, code, "Leo")
    leo_row = page.locator(f'#rows tr[data-session="{leo_session}"]')
    await expect(leo_row.locator(".student")).to_have_text("Leo", timeout=WAIT_MS)
    await expect(leo_row).to_have_attribute("data-status", "talking", timeout=WAIT_MS)
    await expect(leo_row.locator(".tutor")).to_have_text("Main tutor")
    await leo.wait_for_caption(GREETING, TURN)

    # a handoff to Mathematics changes the row's tutor
    await classroom.ask(leo, SEVEN_EIGHTS)
    await expect(leo_row.locator(".tutor")).to_have_text("Mathematics tutor", timeout=WAIT_MS)
    await expect(leo_row.locator(".subjects")).to_contain_text("Mathematics")

    # a flagged turn appears as a flag, loud, with its tier and categories, not its words
    await classroom.ask(leo, UPSET)
    flag = page.locator("#live-flags li").first
    await expect(flag).to_contain_text("Leo", timeout=WAIT_MS)
    await expect(flag).to_contain_text("urgent")
    await expect(flag).to_contain_text("self-harm")
    await expect(flag).to_have_class("flag-urgent loud")
    assert UPSET.lower().rstrip(".") not in (await page.content()).lower()

    # a second student, for the teacher to end; the page as a teacher sees it
    ada, ada_joined, ada_session = await student_joins(classroom, url, code, "Ada")
    ada_row = page.locator(f'#rows tr[data-session="{ada_session}"]')
    await expect(ada_row).to_have_attribute("data-status", "talking", timeout=WAIT_MS)
    await ada.wait_for_caption(GREETING, TURN)
    await screenshot(page, "realserver-live")

    # a student leaving (the page's Leave: the visit ends, the call goes) disappears
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        left = await http.post("/api/leave", json={"resume": leo_joined["resume"]})
    assert left.status_code == 204
    await leo.leave()
    await expect(leo_row).to_have_count(0, timeout=WAIT_MS)
    await expect(ada_row).to_have_count(1)

    # "End visit": the student hears it from the server, the tutor says goodbye and leaves,
    # the room and its dispatches go, and the records say the teacher ended it
    told = asyncio.Event()
    disconnected = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == VISIT_ENDED_TOPIC and packet.participant is None:
            told.set()

    ada.room.on("data_received", on_data)
    ada.room.on("disconnected", lambda *_: disconnected.set())

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await ada_row.get_by_role("button", name="End visit").click()
    async with asyncio.timeout(TURN):
        await told.wait()
    await ada.wait_for_caption(TEACHER_ENDED_LINE, TURN)
    async with asyncio.timeout(TURN):
        await disconnected.wait()
    await classroom.until_empty(ada_joined["room"])
    await expect(ada_row).to_have_count(0, timeout=WAIT_MS)
    assert await records_of(env, ada_session) == ("ended by teacher", "teacher")
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        again = await http.post("/api/token", json={"resume": ada_joined["resume"]})
    assert again.status_code == 410  # the visit is over: no key opens it again
    # nor does the token the student had: it still joins (its 15 minutes have not run out)
    # and makes the room again, but the tutor it brings finds the visit over and closes it
    # (the room may go sooner still, while the student is joining: nothing heard either way)
    old_token = await join(classroom.livekit.url, ada_joined["token"], ada_joined["identity"])
    classroom.joined.append(old_token)
    async with asyncio.timeout(TURN):
        await old_token.closed.wait()
    assert old_token.captions == [] and not any(old_token.loud.values())  # not a word
    await classroom.until_empty(ada_joined["room"])

    # closing the class from the page ends its live visits: the student's page says so
    mia_page, mia_joined = await open_page(browser, url, code, name="Mia")
    mia_session = session_of(mia_joined)
    mia_row = page.locator(f'#rows tr[data-session="{mia_session}"]')
    await expect(mia_row).to_have_attribute("data-status", "talking", timeout=WAIT_MS)
    await expect(mia_page.locator("#captions")).to_contain_text(GREETING, timeout=WAIT_MS)
    await page.get_by_role("button", name="End the class for everyone").click()
    await expect(mia_page.locator("#message")).to_contain_text(
        "Your teacher closed the class", timeout=WAIT_MS
    )
    await expect(mia_page.locator("body")).to_have_attribute("data-stage", "join")
    await classroom.until_empty(mia_joined["room"])
    assert await records_of(env, mia_session) == ("ended by teacher", "class closed")
