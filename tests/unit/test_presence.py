"""The active tutor is published as the worker participant's attributes for the student's
page, on entering (in-session or after a crossing), and a failure never breaks a turn."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.conversation.presence import (
    ALIVE_ATTRIBUTE,
    ALIVE_FOR,
    KIND_ATTRIBUTE,
    TITLE_ATTRIBUTE,
    alive,
    wait_published,
)
from agent.dispatch.metadata import dispatch_metadata
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster
from harness.fakes.llm import call, say
from harness.fakes.room import RoomHub
from harness.fakes.tutoring import tutoring

QUESTION = "What is 7 times 8?"
NOUN = "What is a noun?"
WAIT = 10.0


def title_changes(hub: RoomHub) -> list[tuple[str, dict[str, str]]]:
    """The attribute changes that published a tutor's title (not its signs of life)."""
    return [(who, change) for who, change in hub.attribute_changes if TITLE_ATTRIBUTE in change]


def title_of(hub: RoomHub, identity: str) -> str | None:
    return hub.attributes.get(identity, {}).get(TITLE_ATTRIBUTE)


async def test_a_handoff_changes_the_published_tutor_title() -> None:
    scripts = {
        "orchestrator": [say("Hi!"), call("route_to_math", question_summary=QUESTION)],
        "math": [say("56.")],
    }
    cluster = Cluster(RoomHub(), scripts)
    hub = cluster.hub
    try:
        job = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-p", student="kid-1")
        )
        await hub.until(lambda: title_of(hub, job.identity) == "main tutor", WAIT)

        await job.session.run(user_input=QUESTION)
        await hub.until(lambda: title_of(hub, job.identity) == "Mathematics tutor", WAIT)

        published = hub.attributes[job.identity]
        assert (published[KIND_ATTRIBUTE], published[TITLE_ATTRIBUTE]) == (
            "math",
            "Mathematics tutor",
        )
        assert [change[TITLE_ATTRIBUTE] for _, change in title_changes(hub)] == [
            "main tutor",
            "Mathematics tutor",
        ]
    finally:
        await cluster.close()


async def test_the_tutor_of_another_worker_publishes_itself_once_it_has_the_floor() -> None:
    scripts = {
        "orchestrator": [say("Hi!"), call("route_to_english", question_summary=NOUN)],
        "english_rt": [say("A noun names a thing.")],
    }
    cluster = Cluster(RoomHub(), scripts)
    hub = cluster.hub
    try:
        first = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-p", student="kid-1")
        )
        await asyncio.wait_for(first.spoke.wait(), WAIT)
        await first.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await hub.until(lambda: title_of(hub, english.identity) == "English tutor", WAIT)

        assert hub.attributes[english.identity][KIND_ATTRIBUTE] == "english"
        # published once it has the floor: after the outgoing tutor's last word
        published = next(
            e.at
            for e in hub.timeline
            if e.identity == english.identity and TITLE_ATTRIBUTE in e.what
        )
        assert hub.speech_spans(first.identity)[-1][1] <= published
        assert [who for who, _ in title_changes(hub)] == [first.identity, english.identity]
    finally:
        await cluster.close()


class BrokenParticipant:
    def __init__(self) -> None:
        self.calls = 0

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.calls += 1
        raise ConnectionError("the room is gone")


async def test_a_failed_publication_is_logged_and_the_handoff_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("56.")],
    }
    async with tutoring(scripts) as t:
        broken = BrokenParticipant()
        t.userdata.presence = broken
        with caplog.at_level(logging.WARNING, logger="tutor.presence"):
            result = await t.turn(QUESTION)
            await wait_published()

        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages[-1] == "56."
        assert broken.calls == 1
        [warning] = [r for r in caplog.records if r.name == "tutor.presence"]
        assert "ConnectionError" in warning.getMessage()


async def test_a_publication_left_by_a_closed_loop_does_not_break_waiting_in_another() -> None:
    """A job's loop can close with a publication in flight (a test's, a crashed job's):
    waiting for this loop's publications must neither wait on it nor touch its loop."""
    import asyncio

    from agent.conversation.presence import publish_tutor, wait_published

    class Stuck:
        async def set_attributes(self, attributes: dict[str, str]) -> None:
            await asyncio.Event().wait()

    def leave_one_behind() -> None:
        async def publish() -> None:
            publish_tutor(Stuck(), "math", "Mathematics tutor")
            await asyncio.sleep(0)  # the publication starts, then this loop is closed

        loop = asyncio.new_event_loop()
        loop.run_until_complete(publish())
        loop.close()

    await asyncio.to_thread(leave_one_behind)
    await asyncio.wait_for(wait_published(), timeout=5)


async def test_a_tutor_renews_its_sign_of_life_while_its_job_runs() -> None:
    cluster = Cluster(RoomHub(), {"orchestrator": [say("Hi!")]})
    hub = cluster.hub
    try:
        job = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-a", student="kid-1")
        )

        def sign() -> str | None:
            return hub.attributes.get(job.identity, {}).get(ALIVE_ATTRIBUTE)

        await hub.until(lambda: sign() is not None, WAIT)
        first = sign()
        assert alive(hub.attributes[job.identity])
        await hub.until(lambda: sign() != first, WAIT)  # renewed, not set once
        assert float(sign() or 0) > float(first or 0)
    finally:
        await cluster.close()


def test_a_sign_of_life_too_old_or_missing_is_no_sign_of_life() -> None:
    now = 1_000_000.0
    assert alive({ALIVE_ATTRIBUTE: f"{now - ALIVE_FOR / 2}"}, now)
    assert not alive({ALIVE_ATTRIBUTE: f"{now - ALIVE_FOR - 0.1}"}, now)
    assert not alive({}, now)
    assert not alive({ALIVE_ATTRIBUTE: "soon"}, now)
