"""A class at the bell on the real server: a worker full to its capacity refuses the next
student instead of taking a session it cannot serve; that student's page says every tutor is
busy (no silent room, no dispatch left waiting), and the students it took are answered."""

from __future__ import annotations

from pathlib import Path

import pytest
from livekit import api
from playwright.async_api import expect

from harness import realserver
from harness.fakes.production import FIFTY_SIX, GREETING, SEVEN_EIGHTS
from harness.page import class_code, open_page
from harness.realserver import TURN, room_state
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")
WAIT_MS = int(TURN * 1000)
FULL_WORKER = "learning-orchestrator-one-seat"


async def test_a_full_worker_refuses_the_next_student_whose_page_says_every_tutor_is_busy(
    classroom: Classroom,
    env: dict[str, str],
    run_dir: Path,
    web,  # type: ignore[no-untyped-def]
    chromium_with,  # type: ignore[no-untyped-def]
    server_api: api.LiveKitAPI,
) -> None:
    speech_dir, models = classroom.speech_dir, classroom.models
    named = {"ORCHESTRATOR_AGENT_NAME": FULL_WORKER}
    worker = await realserver.start_worker(
        "learning-orchestrator",
        env | named | {"WORKER_CAPACITY": "1", "NUM_IDLE_PROCESSES": "1"},
        run_dir,
        name="one-seat-orchestrator",
    )
    try:
        url = await web(**named, WEB_TUTOR_ARRIVAL_TIMEOUT="2", WEB_TUTOR_MAX_DISPATCHES="2")
        code = await class_code(env)
        asking = realserver.microphone_wav(
            speech_dir,
            "one-seat-first",
            [(8.0, realserver.espeak_wav(SEVEN_EIGHTS, speech_dir))],
            seconds=120.0,
        )
        models.questions.expect(SEVEN_EIGHTS)
        first, _ = await open_page(await chromium_with(asking), url, code, name="Ana")
        await expect(first.locator("#captions")).to_contain_text(GREETING, timeout=WAIT_MS)

        silent = realserver.microphone_wav(speech_dir, "one-seat-second", [], 5.0)
        second, joined = await open_page(await chromium_with(silent), url, code, name="Ben")
        await expect(second.locator("#message")).to_contain_text("tutors are busy", timeout=WAIT_MS)
        people, dispatches = await room_state(server_api, joined["room"])
        assert not [p for p in people if p.startswith("agent-")], people
        assert dispatches == 0, "a dispatch was left waiting after the page gave up"

        # the student the worker took is served all the same
        await expect(first.locator("#captions")).to_contain_text(FIFTY_SIX, timeout=WAIT_MS)
    finally:
        await worker.stop()
