"""A second dispatch of the orchestrator racing the first into the same room (a re-dispatch
that crossed a slow first job): the student never hears two tutors."""

from __future__ import annotations

import secrets

import pytest
from livekit import api

from agent.dispatch.metadata import dispatch_metadata
from harness.fakes.production import FIFTY_SIX, GREETING, SEVEN_EIGHTS
from harness.realserver import TURN
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_second_dispatch_racing_the_first_never_gives_two_tutors(
    classroom: Classroom,
) -> None:
    room = f"race-{secrets.token_hex(4)}"
    session = f"race-{secrets.token_hex(6)}"
    student = await classroom.join(room, session_id=session)
    # the second dispatch right behind the student's own: both jobs start together
    await classroom.server_api.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(
            agent_name="learning-orchestrator",
            room=room,
            metadata=dispatch_metadata(session=session, student="maya"),
        )
    )
    await student.wait_for_caption(GREETING, TURN)
    await classroom.ask(student, SEVEN_EIGHTS)
    await student.wait_for_caption(FIFTY_SIX, TURN)
    await student.wait_for(lambda: student.quiet_since(1.0), TURN, "a quiet moment")

    assert [c.text for c in student.captions].count(GREETING) == 1, student.report()
    assert [c.text for c in student.captions].count(FIFTY_SIX) == 1, student.report()
    assert student.overlaps() == [], student.report()
    assert len(student.agents_present()) == 1, student.report()

    await student.leave()
    await classroom.until_empty(room)
