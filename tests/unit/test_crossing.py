"""Handovers across workers: both real job bodies, real sessions, in an in-memory room."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.conversation.tutors import EnglishAgent, HistoryAgent
from agent.dispatch.metadata import dispatch_metadata, parse_dispatch_metadata
from agent.handover.outgoing import STAY_LINE
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import Reply, call, say
from harness.fakes.room import RoomHub
from harness.rosters import ANNOUNCEMENTS

NOUN = "What is a noun?"
WAIT = 10.0


@asynccontextmanager
async def classroom(
    scripts: Mapping[str, Sequence[Reply]], **options: object
) -> AsyncIterator[tuple[Cluster, Job]]:
    """A cluster with a student's orchestrator job that has greeted."""
    scripts = {**scripts, "orchestrator": [say("Hi!"), *scripts.get("orchestrator", ())]}
    cluster = Cluster(RoomHub(), scripts, **options)  # type: ignore[arg-type]
    job = await cluster.start_job(
        ORCHESTRATOR_WORKER, dispatch_metadata(session="s-1", student="kid-1")
    )
    await asyncio.wait_for(job.spoke.wait(), WAIT)
    try:
        yield cluster, job
    finally:
        await cluster.close()


def round_trip_scripts(question: str) -> dict[str, list[Reply]]:
    """Orchestrator -> English (answers NOUN) -> back with `question` -> History answers."""
    return {
        "orchestrator": [
            call("route_to_english", question_summary=NOUN),
            call("route_to_history", question_summary=question),  # the returning orchestrator
        ],
        "english_rt": [
            say("A noun names a thing."),
            call("route_back_to_orchestrator", reason=question),
        ],
        "history": [say("Napoleon was a French emperor.")],
    }


async def test_english_is_dispatched_and_answers_the_question_without_a_new_turn() -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english_rt": [say("A noun names a person, place or thing.")],
    }
    async with classroom(scripts) as (cluster, orchestrator):
        result = await orchestrator.session.run(user_input=NOUN)
        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["english"]]

        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.spoke.wait(), WAIT)
        await asyncio.wait_for(orchestrator.ended.wait(), WAIT)

        assert english.said == ["A noun names a person, place or thing."]
        assert isinstance(english.session.current_agent, EnglishAgent)
        # one dispatch, to the English worker, with decodable metadata for this session
        [(worker, metadata)] = cluster.dispatched
        fields = parse_dispatch_metadata(metadata)
        assert worker == ENGLISH_WORKER
        assert fields["session"] == "s-1" and fields["student"] == "kid-1"
        assert fields["question"] == NOUN and fields["from"] == orchestrator.identity
        assert english.session.userdata.session_id == "s-1"
        assert english.session.userdata.student_identity == "kid-1"
        # the outgoing job really ended and left; nobody idle stays behind
        assert orchestrator.end_reason.startswith("handed over")
        assert cluster.hub.present() == [english.identity]
        # one voice at a time, and the incoming tutor spoke only after the outgoing left
        assert cluster.hub.max_concurrent_speakers() == 1
        left = next(
            e.at
            for e in cluster.hub.timeline
            if e.identity == orchestrator.identity and e.what == "leave"
        )
        assert cluster.hub.first_words(english.identity) >= left


async def test_english_receives_the_conversation_with_the_question_once() -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english_rt": [say("A noun names a thing.")],
    }
    async with classroom(scripts) as (cluster, orchestrator):
        await orchestrator.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.spoke.wait(), WAIT)

        [request] = cluster.llms["english_rt"].requests
        assert request.texts(role="user") == [NOUN]
        assert request.all_text().count(NOUN) == 1
        assert "Hi!" in request.texts(role="assistant")  # "as I said before" still works
        # no model request of the outgoing tutor after its route call
        assert cluster.log.names() == ["orchestrator", "orchestrator", "english_rt"]


async def test_english_not_ready_falls_back_to_the_pipeline_english_tutor() -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english": [say("A noun is a naming word.")],
    }
    async with classroom(scripts, unready_workers={ENGLISH_WORKER}) as (cluster, orchestrator):
        cluster.settings = cluster.settings.model_copy(update={"handover_ready_timeout": 0.3})
        orchestrator.session.userdata.crossing.ready_timeout = 0.3
        await orchestrator.session.run(user_input=NOUN)
        await orchestrator.session.userdata.crossing.wait_idle()
        await cluster.said(orchestrator, "A noun is a naming word.")

        assert cluster.cancelled == ["AD_1"]
        assert not orchestrator.ended.is_set()
        assert isinstance(orchestrator.session.current_agent, EnglishAgent)
        [request] = cluster.llms["english"].requests
        assert request.all_text().count(NOUN) == 1
        assert orchestrator.said == ["Hi!", ANNOUNCEMENTS["english"], "A noun is a naming word."]


async def test_english_hands_back_to_a_new_orchestrator_that_answers_the_reason() -> None:
    napoleon = "Who was Napoleon?"
    async with classroom(round_trip_scripts(napoleon)) as (cluster, first):
        await first.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.spoke.wait(), WAIT)

        result = await english.session.run(user_input=napoleon)
        assert [e.item.text_content for e in result.events if e.type == "message"] == [
            ANNOUNCEMENTS["orchestrator"]
        ]
        back = await cluster.job(ORCHESTRATOR_WORKER, 2)
        await cluster.said(back, "Napoleon was a French emperor.")
        await asyncio.wait_for(english.ended.wait(), WAIT)

        fields = parse_dispatch_metadata(cluster.dispatched[-1][1])
        assert fields["return_from_english"] == "s-1" and fields["question"] == napoleon
        assert back.session.userdata.session_id == "s-1"
        assert back.session.userdata.greeted  # no second greeting for a returning student
        assert isinstance(back.session.current_agent, HistoryAgent)
        assert cluster.hub.present() == [back.identity]
        assert cluster.hub.max_concurrent_speakers() == 1
        # it prepared its answer while English still held the floor
        returning_request = cluster.llms["orchestrator"].requests[-1]
        english_left = next(
            e.at
            for e in cluster.hub.timeline
            if e.identity == english.identity and e.what == "leave"
        )
        assert returning_request.started_at < english_left
        assert cluster.hub.first_words(back.identity) >= english_left
        # the whole conversation came back: the first orchestrator's greeting included
        assert "Hi!" in returning_request.texts(role="assistant")
        assert returning_request.texts(role="user").count(napoleon) == 1


async def test_orchestrator_not_ready_keeps_english_on_the_floor_and_says_so() -> None:
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english_rt": [
            say("A noun names a thing."),
            call("route_back_to_orchestrator", reason="said goodbye"),
        ],
    }
    async with classroom(scripts) as (cluster, first):
        await first.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.spoke.wait(), WAIT)
        cluster.unready_workers.add(ORCHESTRATOR_WORKER)
        english.session.userdata.crossing.ready_timeout = 0.3

        await english.session.run(user_input="Goodbye!")
        await english.session.userdata.crossing.wait_idle()
        await cluster.said(english, STAY_LINE)

        assert english.said[-2:] == [ANNOUNCEMENTS["orchestrator"], STAY_LINE]
        assert not english.ended.is_set()
        assert cluster.cancelled == ["AD_2"]
        assert cluster.hub.present() == [english.identity]


async def test_returning_orchestrator_hands_the_question_on_to_the_subject_tutor() -> None:
    """In-session after a crossing: the subject tutor sees the transferred question once."""
    napoleon = "Who was Napoleon? | Élan: 北京"
    async with classroom(round_trip_scripts(napoleon)) as (cluster, first):
        await first.session.run(user_input=NOUN)
        english = await cluster.job(ENGLISH_WORKER, 1)
        await asyncio.wait_for(english.spoke.wait(), WAIT)
        await english.session.run(user_input=napoleon)
        back = await cluster.job(ORCHESTRATOR_WORKER, 2)
        await cluster.said(back, "Napoleon was a French emperor.")

        [history_request] = cluster.llms["history"].requests
        assert history_request.texts(role="user").count(napoleon) == 1
        assert history_request.all_text().count(napoleon) == 1
        assert NOUN in history_request.texts(role="user")  # the earlier conversation too


@dataclass
class UnconfirmedDispatcher:
    """Creates each dispatch at once but never confirms it (its answer is lost)."""

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def dispatch(
        self, *, agent_name: str, room: str, metadata: str, log_fields: Any = None
    ) -> None:
        self.created.append(metadata)
        await asyncio.Event().wait()  # until the handover gives up and cancels the call

    async def cancel(self, dispatch: str) -> bool:
        self.deleted.append(dispatch)
        return True

    async def cancel_matching(self, *, agent_name: str, room: str, metadata: str) -> bool:
        self.deleted += [m for m in self.created if m == metadata]
        return True


async def test_a_fallback_removes_a_dispatch_whose_creation_was_never_confirmed() -> None:
    dispatcher = UnconfirmedDispatcher()
    scripts = {
        "orchestrator": [call("route_to_english", question_summary=NOUN)],
        "english": [say("A noun is a naming word.")],
    }
    async with classroom(scripts, dispatcher=dispatcher) as (cluster, orchestrator):
        orchestrator.session.userdata.crossing.ready_timeout = 0.3
        await orchestrator.session.run(user_input=NOUN)
        await orchestrator.session.userdata.crossing.wait_idle()
        await cluster.said(orchestrator, "A noun is a naming word.")

        assert len(dispatcher.created) == 1
        assert dispatcher.deleted == dispatcher.created
