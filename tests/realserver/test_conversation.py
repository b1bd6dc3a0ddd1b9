"""The whole conversation on the real server, as the student hears it: the greeting, Math
in-session, English across workers and back, History, and the tutor gone after the student."""

from __future__ import annotations

import secrets

import pytest

from harness import realserver
from harness.fakes.production import (
    FIFTY_SIX,
    GREETING,
    NAPOLEON,
    NAPOLEON_ANSWER,
    NOUN,
    NOUN_ANSWER,
    SEVEN_EIGHTS,
)
from harness.realserver import TURN
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_whole_conversation_is_heard_one_tutor_at_a_time(classroom: Classroom) -> None:
    room = f"conversation-{secrets.token_hex(4)}"
    student = await classroom.join(room)

    greeting = await student.wait_for_caption(GREETING, TURN)
    orchestrator = greeting.identity

    await classroom.ask(student, SEVEN_EIGHTS)
    math = await student.wait_for_caption(FIFTY_SIX, TURN)
    line = student.caption_from("Mathematics tutor")
    assert line is not None and line.identity == orchestrator == math.identity

    await classroom.ask(student, NOUN)
    english = await student.wait_for_caption(NOUN_ANSWER, TURN)
    assert english.identity != orchestrator
    assert student.caption_from("English tutor") is not None
    await student.wait_for(lambda: orchestrator in student.left, TURN, "the orchestrator leaving")

    await classroom.ask(student, NAPOLEON)
    history = await student.wait_for_caption(NAPOLEON_ANSWER, TURN)
    assert history.identity not in (orchestrator, english.identity)
    assert student.caption_from("main tutor") is not None
    await student.wait_for(
        lambda: english.identity in student.left, TURN, "the English tutor leaving"
    )
    await student.wait_for(lambda: student.quiet_since(1.0), TURN, "a quiet moment")

    assert [c.text for c in student.captions].count(GREETING) == 1, student.report()
    assert student.overlaps() == [], student.report()
    heard = [s.identity for s in student.speech()]
    assert heard[0] == orchestrator and heard[-1] == history.identity, student.report()
    assert student.agents_present() == [history.identity]
    # a clean conversation: no ERROR in either worker's log (bench realserver counts the
    # event-loop stalls, a timing)
    assert realserver.worker_log_errors(*classroom.workers.logs()) == []

    await student.leave()
    await classroom.until_empty(room)
