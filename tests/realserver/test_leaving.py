"""The student leaves at the awkward moments: while English has the floor, and in the middle
of a crossing. Every tutor leaves after them and no dispatch is left to bring one back."""

from __future__ import annotations

import secrets

import pytest

from harness.fakes.production import GREETING, NOUN, NOUN_ANSWER
from harness.realserver import TURN
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_student_who_leaves_while_english_has_the_floor_leaves_no_tutor_behind(
    classroom: Classroom,
) -> None:
    room = f"leave-english-{secrets.token_hex(4)}"
    student = await classroom.join(room)
    orchestrator = (await student.wait_for_caption(GREETING, TURN)).identity
    await classroom.ask(student, NOUN)
    english = (await student.wait_for_caption(NOUN_ANSWER, TURN)).identity
    await student.wait_for(lambda: orchestrator in student.left, TURN, "the orchestrator leaving")
    assert student.agents_present() == [english]

    await student.leave()
    await classroom.until_empty(room)


async def test_a_student_who_leaves_during_a_crossing_is_not_followed_by_a_tutor(
    classroom: Classroom,
) -> None:
    room = f"leave-crossing-{secrets.token_hex(4)}"
    student = await classroom.join(room)
    await student.wait_for_caption(GREETING, TURN)
    await classroom.ask(student, NOUN)
    # the announcement has started: the English worker has been (or is being) dispatched
    await student.wait_for_caption("English tutor", TURN)
    assert student.caption_from(NOUN_ANSWER) is None

    await student.leave()
    await classroom.until_empty(room)
