"""A school adds a subject by editing a copy of the roster, with no code change: the README's
Science tutor in-session, and a French tutor on a realtime worker of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config.roster import roster_for
from agent.config.settings import load_settings
from agent.conversation.routing import build_tutor
from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata
from agent.conversation.tutor import Tutor
from agent.dispatch.metadata import dispatch_metadata, parse_dispatch_metadata
from agent.workers.models import pipeline_tutor_models
from harness.fakes.audio import PlaybackLog, RealtimeAudioOutput
from harness.fakes.cluster import ORCHESTRATOR_WORKER, Cluster
from harness.fakes.llm import Reply, call, say
from harness.fakes.openai_server import ChatCall, FakeOpenAI
from harness.fakes.production import GREETING, VOICES, settings_for
from harness.fakes.room import RoomHub
from harness.fakes.tutoring import tutoring
from harness.rosters import ANNOUNCEMENTS, readme_example, roster_with, write_roster

SKY = "Why is the sky blue?"
RAYLEIGH = "Sunlight bounces off the air, and blue light bounces the most."
BONJOUR = "How do I say hello in French?"
NAPOLEON = "Who was Napoleon?"
FRENCH_WORKER = "learning-french"
WAIT = 10.0


async def test_the_orchestrator_routes_a_science_question_to_the_added_science_tutor(
    tmp_path: Path,
) -> None:
    roster = roster_with(tmp_path, readme_example("[tutors.science]"))
    science = roster.tutor("science")
    scripts = {
        "orchestrator": [call("route_to_science", question_summary=SKY)],
        "science": [say(RAYLEIGH)],
    }
    async with tutoring(scripts, roster=roster) as t:
        result = await t.turn(SKY)

        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [science.handoff_line, RAYLEIGH]
        tutor = t.session.current_agent
        assert isinstance(tutor, Tutor)
        assert (tutor.kind, tutor.title) == ("science", "Science tutor")
        assert t.userdata.active_tutor == "science"
        [routing, science_request] = t.log.requests[1:]
        assert "route_to_science" in routing.tool_names
        assert science_request.texts(role="user") == [SKY]
        assert science_request.tool_names == ["route_to_math", "route_back_to_orchestrator"]
        assert science.instructions in t.llms["science"].requests[0].texts(role="system")[0]


async def test_the_science_tutor_speaks_its_line_and_answer_in_the_roster_voices(
    tmp_path: Path,
) -> None:
    """Through the production wiring: the roster (TUTOR_ROSTER) gives the Science tutor its
    model, its voice and the description of the orchestrator's new routing tool."""
    path = write_roster(tmp_path, readme_example("[tutors.science]"))

    def chat(request: ChatCall) -> Reply:
        if request.model == science.model:
            return say(RAYLEIGH)
        if not request.last_user():
            return say(GREETING)
        return call("route_to_science", question_summary=SKY)

    async with FakeOpenAI(chat=chat, tts_seconds_per_char=0.002) as fake:
        settings = settings_for(fake, tutor_roster=str(path))
        roster = roster_for(settings)
        science = roster.tutor("science")
        tutor_models = pipeline_tutor_models(settings, roster)
        userdata = SessionUserdata(roster=roster, tutor_models=tutor_models)
        playback = PlaybackLog()
        session = create_session(userdata)
        session.output.audio = RealtimeAudioOutput(playback)
        try:
            async with session:
                await session.start(build_tutor("orchestrator", userdata))
                await session.run(user_input=SKY)
                await playback.played(3)
        finally:
            for models in tutor_models.values():
                await models.llm.aclose()
                await models.tts.aclose()
        fake.check()

    speech = [(s["input"], s["voice"]) for s in fake.bodies("/v1/audio/speech")]
    assert speech == [
        (GREETING, VOICES["orchestrator"]),
        (science.handoff_line, VOICES["orchestrator"]),  # the outgoing tutor's voice
        (RAYLEIGH, science.voice),
    ]
    assert science.voice not in VOICES.values()
    chats = fake.bodies("/v1/chat/completions")
    assert [c["model"] for c in chats] == ["orch-model", "orch-model", science.model]
    tools = {t["function"]["name"]: t["function"] for t in chats[1]["tools"]}
    assert science.covers in tools["route_to_science"]["description"]


async def test_a_french_tutor_on_its_own_realtime_worker_is_crossed_to_and_back(
    tmp_path: Path,
) -> None:
    roster = roster_with(tmp_path, readme_example("[workers.learning-french]"))
    french = roster.tutor("french")
    scripts = {
        "orchestrator": [
            say("Hi!"),
            call("route_to_french", question_summary=BONJOUR),
            call("route_to_history", question_summary=NAPOLEON),  # the returning orchestrator
        ],
        "french_rt": [say("We say bonjour."), call("route_back_to_orchestrator", reason=NAPOLEON)],
        "history": [say("Napoleon was a French emperor.")],
    }
    cluster = Cluster(RoomHub(), scripts, roster=roster)
    try:
        first = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-f", student="kid-1")
        )
        await asyncio.wait_for(first.spoke.wait(), WAIT)
        result = await first.session.run(user_input=BONJOUR)
        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [french.handoff_line]

        there = await cluster.job(FRENCH_WORKER, 1)
        await cluster.said(there, "We say bonjour.")
        await asyncio.wait_for(first.ended.wait(), WAIT)
        tutor = there.session.current_agent
        assert isinstance(tutor, Tutor) and tutor.kind == "french"

        result = await there.session.run(user_input=NAPOLEON)
        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["orchestrator"]]
        back = await cluster.job(ORCHESTRATOR_WORKER, 2)
        await cluster.said(back, "Napoleon was a French emperor.")
        await asyncio.wait_for(there.ended.wait(), WAIT)
        assert cluster.hub.present() == [back.identity]  # nobody idle stays behind
    finally:
        await cluster.close()

    assert not cluster.errors
    assert [worker for worker, _ in cluster.dispatched] == [FRENCH_WORKER, ORCHESTRATOR_WORKER]
    to_french = parse_dispatch_metadata(cluster.dispatched[0][1])
    assert to_french["tutor"] == "french" and to_french["question"] == BONJOUR
    assert to_french["session"] == "s-f"
    assert there.session.userdata.session_id == back.session.userdata.session_id == "s-f"
    [french_request, *_] = cluster.llms["french_rt"].requests
    assert french_request.texts(role="user") == [BONJOUR]
    assert cluster.llms["english_rt"].requests == []  # English is not special any more
    assert cluster.hub.max_concurrent_speakers() == 1


async def test_the_roster_settings_rename_a_worker_that_dispatches_follow(
    tmp_path: Path,
) -> None:
    """ENGLISH_AGENT_NAME, set in an operator's .env, still names the English worker."""
    settings = load_settings(english_agent_name="school-english", handover_ready_timeout=2.0)
    roster = roster_for(settings)
    scripts = {
        "orchestrator": [say("Hi!"), call("route_to_english", question_summary="What is a noun?")],
        "english_rt": [say("A noun names a thing.")],
    }
    cluster = Cluster(RoomHub(), scripts, roster=roster, settings=settings)
    try:
        first = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-r", student="kid-1")
        )
        await asyncio.wait_for(first.spoke.wait(), WAIT)
        await first.session.run(user_input="What is a noun?")
        english = await cluster.job("school-english", 1)
        await cluster.said(english, "A noun names a thing.")
    finally:
        await cluster.close()
    assert [worker for worker, _ in cluster.dispatched] == ["school-english"]
