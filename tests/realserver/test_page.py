"""The student page in Debian's Chromium on the real server, with the web service as a
process: the tutor's title follows each handoff, captions appear, Leave ends the visit; and
no silent room: with no tutor worker the page says the tutor is on the way while the web
service dispatches again, then the tutor comes once a worker starts, or the page says every
tutor is busy and no dispatch is left waiting.

Screenshots go to `build/screenshots/realserver-*.png`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from livekit import api
from playwright.async_api import expect

from harness import realserver
from harness.fakes.production import FIFTY_SIX, GREETING, NOUN, NOUN_ANSWER, SEVEN_EIGHTS
from harness.page import class_code, open_page, screenshot
from harness.realserver import TURN, room_state
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")
WAIT_MS = int(TURN * 1000)
LATE_WORKER = "learning-orchestrator-late"


async def test_the_page_shows_each_tutor_and_the_captions_and_leave_ends_the_visit(
    classroom: Classroom,
    env: dict[str, str],
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    models, speech_dir = classroom.models, classroom.speech_dir
    microphone = realserver.microphone_wav(
        speech_dir,
        "page-student",
        [
            (8.0, realserver.espeak_wav(SEVEN_EIGHTS, speech_dir)),
            (24.0, realserver.espeak_wav(NOUN, speech_dir)),
        ],
        seconds=120.0,
    )
    models.questions.expect(SEVEN_EIGHTS)
    models.questions.expect(NOUN)
    url = await web()
    browser = await chromium_with(microphone)
    page, joined = await open_page(browser, url, await class_code(env))
    room = joined["room"]

    title = page.locator("#tutor-title")
    captions = page.locator("#captions")
    await expect(page.locator("body")).to_have_attribute("data-stage", "connected", timeout=WAIT_MS)
    await expect(captions).to_contain_text(GREETING, timeout=WAIT_MS)
    await expect(title).to_have_text("main tutor", timeout=WAIT_MS)
    await screenshot(page, "realserver-greeting")
    await expect(captions).to_contain_text(FIFTY_SIX, timeout=WAIT_MS)
    await expect(title).to_have_text("Mathematics tutor", timeout=WAIT_MS)
    await screenshot(page, "realserver-math")
    await expect(captions).to_contain_text(NOUN_ANSWER, timeout=WAIT_MS)
    await expect(title).to_have_text("English tutor", timeout=WAIT_MS)
    await screenshot(page, "realserver-english")

    async with page.expect_response("**/api/leave") as left:
        await page.get_by_role("button", name="Leave").click()
    assert (await left.value).status == 204  # the page said the visit is over
    await expect(page.locator("#message")).to_contain_text("Goodbye")
    await expect(page.get_by_role("button", name="Start")).to_be_visible()
    await classroom.until_empty(room)
    # the key the page held opens nothing now: a copy of it is of no use to anyone
    async with httpx.AsyncClient(base_url=url, timeout=10) as other:
        replay = await other.post("/api/token", json={"resume": joined["resume"]})
    assert replay.status_code == 410


async def test_with_no_tutor_worker_the_page_says_on_the_way_and_the_tutor_comes_when_one_starts(
    classroom: Classroom,
    env: dict[str, str],
    run_dir: Path,
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    speech_dir, server_api = classroom.speech_dir, classroom.server_api
    late = {"ORCHESTRATOR_AGENT_NAME": LATE_WORKER}
    url = await web(**late, WEB_TUTOR_ARRIVAL_TIMEOUT="2", WEB_TUTOR_MAX_DISPATCHES="10")
    browser = await chromium_with(realserver.microphone_wav(speech_dir, "silent", [], 5.0))
    page, joined = await open_page(browser, url, await class_code(env))
    room = joined["room"]
    message = page.locator("#message")
    await expect(message).to_contain_text("on the way", timeout=WAIT_MS)
    await screenshot(page, "realserver-on-the-way")
    # the service dispatches again while no worker takes the job
    await realserver.eventually(
        lambda: dispatches_in(server_api, room), lambda n: n >= 2, TURN, "a second dispatch"
    )

    worker = await realserver.start_worker(
        "learning-orchestrator", env | late, run_dir, name="late-orchestrator"
    )
    try:
        captions = page.locator("#captions")
        await expect(captions).to_contain_text(GREETING, timeout=WAIT_MS)
        await expect(page.locator("#tutor-title")).to_have_text("main tutor", timeout=WAIT_MS)
        await expect(message).to_be_hidden()
        await screenshot(page, "realserver-late-tutor")
        assert await captions.get_by_text(GREETING).count() == 1
        people, _ = await room_state(server_api, room)
        assert len([p for p in people if p.startswith("agent-")]) == 1, people
        await page.get_by_role("button", name="Leave").click()
        await classroom.until_empty(room)
    finally:
        await worker.stop()


async def test_with_no_tutor_ever_the_page_says_every_tutor_is_busy_and_no_dispatch_waits(
    env: dict[str, str],
    speech_dir: Path,
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
    server_api: api.LiveKitAPI,
) -> None:
    url = await web(
        ORCHESTRATOR_AGENT_NAME="learning-orchestrator-nobody",
        WEB_TUTOR_ARRIVAL_TIMEOUT="1",
        WEB_TUTOR_MAX_DISPATCHES="2",
    )
    browser = await chromium_with(realserver.microphone_wav(speech_dir, "silent", [], 5.0))
    page, joined = await open_page(browser, url, await class_code(env))
    room = joined["room"]
    await expect(page.locator("#message")).to_contain_text("tutors are busy", timeout=WAIT_MS)
    await screenshot(page, "realserver-busy")
    _, dispatches = await room_state(server_api, room)
    assert dispatches == 0, "a dispatch was left waiting for a tutor after the page gave up"


async def dispatches_in(server_api: api.LiveKitAPI, room: str) -> int:
    return (await room_state(server_api, room))[1]
