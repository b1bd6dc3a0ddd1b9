"""Both workers' job bodies under `fake_job_context(job_metadata=...)`."""

from __future__ import annotations

import logging

import pytest
from livekit.plugins import openai

from agent.config.roster import roster_for
from agent.config.settings import load_settings
from agent.conversation.tutors import EnglishAgent, HistoryAgent, OrchestratorAgent
from agent.workers import english, orchestrator
from agent.workers.models import realtime_tutor_models
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import call, say
from harness.fakes.room import RoomHub


async def spoken(cluster: Cluster, job: Job, count: int = 1) -> list[str]:
    await cluster.until(lambda: len(job.said) >= count)
    return job.said


async def test_english_job_answers_the_metadata_question_without_a_student_turn() -> None:
    cluster = Cluster(RoomHub(), {"english_rt": [say("A noun names a thing.")]})
    job = await cluster.start_job(
        ENGLISH_WORKER, "session:abc|student:kid|question:What is a noun?"
    )
    try:
        assert await spoken(cluster, job) == ["A noun names a thing."]
        [request] = cluster.llms["english_rt"].requests
        assert request.texts(role="user") == ["What is a noun?"]
        assert isinstance(job.session.current_agent, EnglishAgent)
        assert job.session.userdata.session_id == "abc"
        assert job.session.userdata.student_identity == "kid"
        assert job.session.userdata.handoffs_since_student_turn == 0
    finally:
        await cluster.close()


async def test_returning_orchestrator_keeps_the_session_and_answers_the_reason() -> None:
    cluster = Cluster(
        RoomHub(),
        {
            "orchestrator": [call("route_to_history", question_summary="Who was Napoleon?")],
            "history": [say("A French emperor.")],
        },
    )
    # the plain, unescaped form an older orchestrator would send
    job = await cluster.start_job(
        ORCHESTRATOR_WORKER, "return_from_english:abc|question:Who was Napoleon?"
    )
    try:
        assert (await spoken(cluster, job, 2))[-1] == "A French emperor."
        assert job.session.userdata.session_id == "abc"
        assert job.session.userdata.greeted
        assert isinstance(job.session.current_agent, HistoryAgent)
        [orchestrator_request] = cluster.llms["orchestrator"].requests
        assert orchestrator_request.texts(role="user") == ["Who was Napoleon?"]
    finally:
        await cluster.close()


@pytest.mark.parametrize(
    "metadata",
    ['{"session": "abc", "question": "hi"}', "\x00\xff garbage \x01", "session"],
    ids=["json", "binary", "truncated"],
)
async def test_garbage_metadata_starts_a_fresh_session_with_a_warning(
    metadata: str, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(RoomHub(), {"orchestrator": [say("Hello! What shall we learn?")]})
    with caplog.at_level(logging.WARNING, logger="tutor.metadata"):
        job = await cluster.start_job(ORCHESTRATOR_WORKER, metadata)
    try:
        assert await spoken(cluster, job) == ["Hello! What shall we learn?"]
        warnings = [r for r in caplog.records if r.name == "tutor.metadata"]
        assert len(warnings) == 1
        userdata = job.session.userdata
        assert userdata.session_id and userdata.session_id != "abc"
        assert isinstance(job.session.current_agent, OrchestratorAgent)
        [request] = cluster.llms["orchestrator"].requests
        assert request.texts(role="user") == []  # nothing made up as the student's words
        assert request.texts(role="system")[-1].startswith("Greet the student")
    finally:
        await cluster.close()


def test_english_worker_builds_the_configured_realtime_model_offline() -> None:
    settings = load_settings(realtime_model="gpt-realtime-mini", english_voice="marin")
    models = realtime_tutor_models(settings, roster_for(settings), "english")

    assert isinstance(models.llm, openai.realtime.RealtimeModel)
    assert models.llm.model == "gpt-realtime-mini"
    assert models.llm._opts.voice == "marin"
    assert isinstance(models.tts, openai.TTS) and models.tts._opts.voice == "marin"


def test_workers_register_their_names_for_explicit_dispatch() -> None:
    assert orchestrator.server._agent_name == "learning-orchestrator"
    assert english.server._agent_name == "learning-english"
    assert english.server._entrypoint_fnc is english.entrypoint
