"""A conversation survives (issue 22) on the real server, judged by what the student hears:

- a blip: the student's signalling connection drops and comes back; LiveKit's own
  reconnection keeps the same tutor, who answers the next question, with no second greeting;
- a reload: the page comes back to its visit by itself, and the tutor that had the floor
  welcomes the student back recalling their question (one visit, every turn once, in order);
- a lost worker: the worker holding the job is killed (SIGKILL, its job processes with it);
  the page's pings go unanswered, the web service clears the lost tutor, and another worker's
  tutor resumes the conversation from the records;
- a lost server node: two LiveKit nodes share Redis behind one URL (Caddy, health-checked);
  the node holding the room is killed (SIGKILL); the page reconnects through the one URL,
  the room is made again on the live node, and the tutor resumes from the records.

Screenshots go to `build/screenshots/realserver-*.png`."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
from livekit import api
from playwright.async_api import Page, expect

from agent.dispatch.token import student_token
from harness import realserver
from harness.fakes.production import FIFTY_SIX, GREETING, SEVEN_EIGHTS, welcome_back
from harness.fakes.tcp_proxy import TcpProxy
from harness.page import class_code, open_page, screenshot
from harness.realserver import (
    TURN,
    Process,
    asked_once,
    room_state,
    session_of,
    worker_holding,
)
from harness.rosters import ANNOUNCEMENTS
from harness.student import join
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")
WAIT_MS = int(TURN * 1000)
# a room the server made again after a lost node, for a lost job's attempt to resume: it
# closes it itself one to two minutes later (121 s after it was made, seen in CI)
LEFTOVER_ROOM_TIMEOUT = 4 * TURN


async def transcript(env: dict[str, str], session_id: str) -> list[tuple[str, str]]:
    """The session's turns as `python -m agent records export` gives them (checked to be
    in time order)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "records", "export", session_id,
        env=env, cwd=realserver.REPO, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    turns = json.loads(out)["turns"]
    assert [t["at"] for t in turns] == sorted(t["at"] for t in turns)
    return [(t["speaker"], t["text"]) for t in turns]


async def heard_the_answer(page: Page) -> None:
    captions = page.locator("#captions")
    await expect(captions).to_contain_text(GREETING, timeout=WAIT_MS)
    await expect(captions).to_contain_text(FIFTY_SIX, timeout=WAIT_MS)
    await expect(page.locator("#tutor-title")).to_have_text("Mathematics tutor", timeout=WAIT_MS)


async def test_a_blip_keeps_the_same_tutor_who_answers_the_next_question_without_greeting(
    classroom: Classroom, env: dict[str, str]
) -> None:
    room = f"blip-{secrets.token_hex(4)}"
    session = f"s-{room}"
    host, port = classroom.livekit.url.removeprefix("ws://").split(":")
    async with TcpProxy(host, int(port)) as signalling:
        token = student_token(classroom.settings, room=room, identity="maya", session_id=session)
        student = await join(f"ws://127.0.0.1:{signalling.port}", token, "maya")
        classroom.joined.append(student)
        tutor = (await student.wait_for_caption(GREETING, TURN)).identity

        reconnecting, reconnected = asyncio.Event(), asyncio.Event()
        student.room.on("reconnecting", lambda *_: reconnecting.set())
        student.room.on("reconnected", lambda *_: reconnected.set())
        signalling.cut()  # the Wi-Fi drops: the signalling connection is gone
        await asyncio.wait_for(reconnecting.wait(), TURN)
        signalling.restore()
        await asyncio.wait_for(reconnected.wait(), TURN)

        await classroom.ask(student, SEVEN_EIGHTS)
        answer = await student.wait_for_caption(FIFTY_SIX, TURN)
        assert answer.identity == tutor  # the same tutor's session, not a new job
        assert student.captions_of(tutor).count(GREETING) == 1, student.report()
        assert student.agents() == [tutor]
        await student.leave()
    await classroom.until_empty(room)
    assert await transcript(env, session) == [
        ("orchestrator", GREETING),
        ("student", SEVEN_EIGHTS),
        ("orchestrator", ANNOUNCEMENTS["math"]),
        ("math", FIFTY_SIX),
    ]


async def test_a_reloaded_page_rejoins_its_visit_and_the_tutor_recalls_the_question(
    classroom: Classroom,
    env: dict[str, str],
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    classroom.models.questions.expect(SEVEN_EIGHTS)
    url = await web()
    browser = await chromium_with(asked_once(classroom.speech_dir, "reload-student"))
    page, joined = await open_page(browser, url, await class_code(env))
    await heard_the_answer(page)

    await page.reload()
    captions = page.locator("#captions")
    await expect(page.locator("body")).to_have_attribute("data-stage", "connected", timeout=WAIT_MS)
    await expect(captions).to_contain_text(welcome_back(SEVEN_EIGHTS), timeout=WAIT_MS)
    await expect(page.locator("#tutor-title")).to_have_text("Mathematics tutor", timeout=WAIT_MS)
    await screenshot(page, "realserver-welcome-back")
    assert await captions.get_by_text(GREETING).count() == 0  # no new-student greeting

    await page.get_by_role("button", name="Leave").click()
    await classroom.until_empty(joined["room"])
    turns = await transcript(env, session_of(joined))
    assert turns == [
        ("orchestrator", GREETING),
        ("student", SEVEN_EIGHTS),
        ("orchestrator", ANNOUNCEMENTS["math"]),
        ("math", FIFTY_SIX),
        ("math", welcome_back(SEVEN_EIGHTS)),
    ], turns


async def test_a_lost_worker_is_replaced_and_its_conversation_goes_on(
    classroom: Classroom,
    env: dict[str, str],
    run_dir: Path,
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    own = {"ORCHESTRATOR_AGENT_NAME": f"learning-orchestrator-lost-{secrets.token_hex(3)}"}
    spare: list[Process] = [
        await realserver.start_worker("learning-orchestrator", env | own, run_dir, name=name)
        for name in ("lost-a", "lost-b")
    ]
    try:
        classroom.models.questions.expect(SEVEN_EIGHTS)
        url = await web(**own)
        browser = await chromium_with(asked_once(classroom.speech_dir, "lost-student"))
        page, joined = await open_page(browser, url, await class_code(env))
        await heard_the_answer(page)

        holder = await worker_holding(classroom.server_api, joined["room"], spare)
        holder.kill()  # SIGKILL to the worker and its job processes
        captions = page.locator("#captions")
        await expect(captions).to_contain_text(welcome_back(SEVEN_EIGHTS), timeout=WAIT_MS)
        await screenshot(page, "realserver-lost-worker")
        assert await captions.get_by_text(GREETING).count() == 1  # greeted once, at the start
        people, _ = await room_state(classroom.server_api, joined["room"])
        assert len([p for p in people if p.startswith("agent-")]) == 1, people

        await page.get_by_role("button", name="Leave").click()
        await classroom.until_empty(joined["room"])
        turns = await transcript(env, session_of(joined))
        assert turns[-1] == ("math", welcome_back(SEVEN_EIGHTS)), turns
        assert len(set(turns)) == len(turns), turns  # every turn once
    finally:
        for process in spare:
            await process.stop()


async def test_a_lost_server_node_is_survived_through_the_one_url(
    classroom: Classroom,
    env: dict[str, str],
    run_dir: Path,
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
) -> None:
    cluster = await realserver.start_cluster(run_dir)
    own = {
        "ORCHESTRATOR_AGENT_NAME": f"learning-orchestrator-cluster-{secrets.token_hex(3)}",
        "LIVEKIT_URL": cluster.url,
    }
    worker = await realserver.start_worker(
        "learning-orchestrator", env | own, run_dir, name="cluster-orchestrator"
    )
    lk = api.LiveKitAPI(cluster.http_url, realserver.API_KEY_ID, realserver.API_SECRET)
    try:
        classroom.models.questions.expect(SEVEN_EIGHTS)
        url = await web(**own, LIVEKIT_PUBLIC_URL=cluster.url)
        browser = await chromium_with(asked_once(classroom.speech_dir, "node-student"))
        page, joined = await open_page(browser, url, await class_code(env))
        await heard_the_answer(page)

        cluster.node_holding(joined["room"]).process.kill()  # SIGKILL
        captions = page.locator("#captions")
        await expect(captions).to_contain_text(welcome_back(SEVEN_EIGHTS), timeout=2 * WAIT_MS)
        await screenshot(page, "realserver-lost-node")
        assert await captions.get_by_text(GREETING).count() == 1  # greeted once, at the start
        # Not asserted: that one agent is listed. The lost job's participant can stay listed
        # in the room made again on the live node after that job has ended (seen in CI for
        # over 60 s): a server-side leftover that speaks no word, left open in issue 22.

        await page.get_by_role("button", name="Leave").click()
        # The lost job's connection is relayed through the live node, which notices the lost
        # one only seconds after the kill; the job's SDK then tries to resume once. If the
        # student has left by then, the server makes the room again for that attempt (and
        # refuses it: "could not restart participant"): nobody in it, no tutor sent to it,
        # closed by the server one to two minutes later (seen in CI). So the room is waited on
        # for that clean-up too.
        await realserver.wait_until_empty(lk, joined["room"], timeout=LEFTOVER_ROOM_TIMEOUT)
        turns = await transcript(env, session_of(joined))
        assert turns[-1] == ("math", welcome_back(SEVEN_EIGHTS)), turns
        assert len(set(turns)) == len(turns), turns  # every turn once
    finally:
        await lk.aclose()
        await worker.stop()
        await cluster.stop()
