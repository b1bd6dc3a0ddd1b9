"""The code a school runs: the workers' job bodies with the models `agent/workers/models.py`
builds from `Settings`, talking to a wire-compatible OpenAI server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, ConversationItemAddedEvent, llm
from livekit.plugins import silero

from agent.config.roster import roster_for
from agent.config.settings import load_settings
from agent.conversation.state import SessionUserdata, TutorModels
from agent.dispatch.metadata import dispatch_metadata
from agent.dispatch.plan import DispatchPlan
from agent.turns.options import realtime_turns
from agent.workers.job import JobModels, JobWiring, local_job
from agent.workers.models import pipeline_tutor_models, realtime_tutor_models, session_stt
from harness import QUESTION_WAV
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster
from harness.fakes.openai_server import API_KEY, FakeOpenAI
from harness.fakes.production import (
    FIFTY_SIX,
    GREETING,
    NAPOLEON,
    NOUN_ANSWER,
    SEVEN_EIGHTS,
    VOICES,
    chat_script,
    production_models,
    realtime_script,
    settings_for,
)
from harness.fakes.room import RoomHub
from harness.rosters import ANNOUNCEMENTS
from harness.sim_audio import RealtimeSink, SimStudent, load_clip

WAIT = 30.0


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(
        chat=chat_script, realtime=realtime_script, transcribe=lambda wav: SEVEN_EIGHTS
    ) as fake:
        yield fake
        fake.check()  # a request the fake did not understand fails the test, body printed


@pytest.fixture(scope="module")
def vad() -> Iterator[silero.VAD]:
    yield silero.VAD.load()


async def close_models(*models: TutorModels | Any) -> None:
    """Close model clients before the test's event loop ends (their connections live on it)."""
    for model in models:
        parts = (model.llm, model.tts) if isinstance(model, TutorModels) else (model,)
        for part in parts:
            if hasattr(part, "aclose"):
                await part.aclose()


def said_event(session: AgentSession[Any], text: str) -> asyncio.Event:
    """Set once the session adds an assistant message containing `text` (after playout)."""
    seen = asyncio.Event()

    def on_item(event: ConversationItemAddedEvent) -> None:
        item = event.item
        if isinstance(item, llm.ChatMessage) and text in (item.text_content or ""):
            seen.set()

    session.on("conversation_item_added", on_item)
    return seen


async def test_a_spoken_question_is_transcribed_routed_and_answered_through_the_wire(
    fake_openai: FakeOpenAI, vad: silero.VAD
) -> None:
    settings = settings_for(fake_openai)
    tutor_models = pipeline_tutor_models(settings)
    sink = RealtimeSink()
    clip = load_clip(QUESTION_WAV, sample_rate=24_000)  # "What is seven times eight?"
    student = SimStudent(clip, sink, talk_seconds=30.0, max_questions=1)
    answered: asyncio.Event | None = None

    def prepare_session(session: AgentSession[SessionUserdata]) -> None:
        nonlocal answered
        session.input.audio = student
        session.output.audio = sink
        answered = said_event(session, FIFTY_SIX)

    recognizer = session_stt(settings)
    wiring = JobWiring(
        models=JobModels(
            tutor_models,
            {
                "stt": recognizer,
                "vad": vad,
                "llm": tutor_models["orchestrator"].llm,
                "tts": tutor_models["orchestrator"].tts,
            },
        ),
        roster=roster_for(settings),
        prepare_session=prepare_session,
    )
    try:
        async with local_job(settings, wiring, plan=DispatchPlan("s-w", "kid")):
            assert answered is not None
            await asyncio.wait_for(answered.wait(), WAIT)
    finally:
        await sink.aclose()
        await close_models(*tutor_models.values(), recognizer)

    # the real STT request: the student's audio as WAV, with the configured model
    [transcription] = fake_openai.bodies("/v1/audio/transcriptions")
    assert transcription["model"] == "stt-model" and transcription["language"] == "en"
    # each tutor's LLM with its own model; the question reached Math once
    chats = fake_openai.bodies("/v1/chat/completions")
    assert [c["model"] for c in chats] == ["orch-model", "orch-model", "math-model"]
    math_input = [m.get("content") for m in chats[-1]["messages"]]
    assert math_input.count(SEVEN_EIGHTS) == 1
    assert {t["function"]["name"] for t in chats[1]["tools"]} == {
        "route_to_math",
        "route_to_history",
        "route_to_english",
    }
    # each line in its speaker's voice, raw PCM from the speech endpoint, really played
    speech = [(s["input"], s["voice"]) for s in fake_openai.bodies("/v1/audio/speech")]
    assert speech == [
        (GREETING, VOICES["orchestrator"]),
        (ANNOUNCEMENTS["math"], VOICES["orchestrator"]),
        (FIFTY_SIX, VOICES["math"]),
    ]
    assert {s["model"] for s in fake_openai.bodies("/v1/audio/speech")} == {"tts-model"}
    assert student.stats.greeted and student.stats.answered >= 1


async def test_an_english_round_trip_runs_on_the_real_realtime_model_over_the_websocket(
    fake_openai: FakeOpenAI,
) -> None:
    settings = settings_for(fake_openai)
    cluster = Cluster(RoomHub(), {}, settings=settings, models=production_models(settings))
    try:
        first = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-e", student="kid")
        )
        await cluster.said(first, GREETING)
        await first.session.run(user_input="Can you help me with English? What is a noun?")
        english = await cluster.job(ENGLISH_WORKER, 1)
        await cluster.said(english, "A noun names a person, place or thing.")
        await english.session.run(user_input=NAPOLEON)
        back = await cluster.job(ORCHESTRATOR_WORKER, 2)
        await cluster.said(back, "Napoleon was a French emperor.")
    finally:
        await cluster.close()
    assert not cluster.errors

    # the English tutor's realtime session: its model and voice, the tutor's tools
    [connect, *_] = fake_openai.events("session.update")
    assert connect["session"]["model"] == "realtime-model"
    assert connect["session"]["audio"]["output"]["voice"] == VOICES["english"]
    tools = [
        t["name"]
        for update in fake_openai.events("session.update")
        for t in update["session"].get("tools", [])
    ]
    assert "route_back_to_orchestrator" in tools
    # the handed-over conversation reached the realtime model, the question once
    created = [
        c.get("text")
        for event in fake_openai.events("conversation.item.create")
        for c in event["item"].get("content", [])
    ]
    assert created.count("Can you help me with English? What is a noun?") == 1
    # its function call handed the student back; the orchestrator routed on to History
    chats = [c["model"] for c in fake_openai.bodies("/v1/chat/completions")]
    assert chats == ["orch-model", "orch-model", "orch-model", "history-model"]
    assert [job.worker for job in cluster.jobs] == [
        ORCHESTRATOR_WORKER,
        ENGLISH_WORKER,
        ORCHESTRATOR_WORKER,
    ]


@pytest.mark.parametrize("ends_turns", ["local", "server"])
async def test_a_realtime_tutors_spoken_turns_end_where_realtime_turn_detection_says(
    fake_openai: FakeOpenAI, vad: silero.VAD, ends_turns: str
) -> None:
    """server (the default): the model's turn detection stands and ends the turn itself.
    local: the product's VAD and endpointing end the child's turn, the model's own turn
    detection is switched off, and the client commits the turn and asks for the answer."""
    settings = settings_for(fake_openai, realtime_turn_detection=ends_turns)
    models = realtime_tutor_models(settings, roster_for(settings), "english")
    sink = RealtimeSink()
    clip = load_clip(QUESTION_WAV, sample_rate=24_000)
    student = SimStudent(clip, sink, talk_seconds=30.0, max_questions=1, answer_timeout=0.5)
    session: AgentSession[None] = AgentSession(tts=models.tts, **realtime_turns(settings, vad))
    session.input.audio, session.output.audio = student, sink
    answered = said_event(session, NOUN_ANSWER)
    try:
        await session.start(Agent(instructions="Teach English.", llm=models.llm))
        await asyncio.wait_for(answered.wait(), WAIT)
    finally:
        await session.aclose()
        await sink.aclose()
        await close_models(models)

    detection = [
        u["session"]["audio"]["input"]["turn_detection"]
        for u in fake_openai.events("session.update")
        if "turn_detection" in u["session"].get("audio", {}).get("input", {})
    ]
    commits = fake_openai.events("input_audio_buffer.commit")
    asked = fake_openai.events("response.create")
    if ends_turns == "local":
        assert detection and all(d is None for d in detection)
        assert len(commits) == 1 and len(asked) == 1  # the client ended the turn
    else:
        assert detection and detection[0]["type"] == "semantic_vad"
        assert commits == [] and asked == []  # the model ended it and answered by itself


async def test_per_role_base_urls_and_keys_from_dot_env_reach_their_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.env` is read only into Settings, so the clients must be given what it says."""
    async with FakeOpenAI() as shared, FakeOpenAI(api_key="speech-key") as speech:
        monkeypatch.chdir(tmp_path)
        for name in ("OPENAI_BASE_URL", "TTS_BASE_URL", "TTS_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        (tmp_path / ".env").write_text(
            f"OPENAI_BASE_URL={shared.url}\nTTS_BASE_URL={speech.url}\nTTS_API_KEY=speech-key\n"
        )
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        models = pipeline_tutor_models(load_settings())["math"]
        chat_ctx = llm.ChatContext.empty()
        chat_ctx.add_message(role="user", content="Hello")
        async with models.llm.chat(chat_ctx=chat_ctx) as stream:
            _ = [chunk async for chunk in stream]
        async with models.tts.synthesize("Hello") as audio:
            frames = [chunk async for chunk in audio]
        await close_models(models)
        shared.check()
        speech.check()
    assert len(shared.bodies("/v1/chat/completions")) == 1
    assert shared.bodies("/v1/audio/speech") == []
    assert [s["input"] for s in speech.bodies("/v1/audio/speech")] == ["Hello"]
    assert frames  # PCM audio the plugin decoded


async def test_streaming_transcription_runs_over_the_realtime_transcription_websocket(
    fake_openai: FakeOpenAI,
) -> None:
    """`openai.STT(use_realtime=True)` streams while the child speaks; the fake's server VAD
    ends the segment and its transcript comes back as a final transcript."""
    from livekit.agents import stt as lk_stt
    from livekit.agents.utils import http_context
    from livekit.plugins import openai

    clip = load_clip(QUESTION_WAV, sample_rate=24_000)
    recognizer = openai.STT(
        model="stt-model", api_key=API_KEY, base_url=fake_openai.url, use_realtime=True
    )
    finals: list[str] = []

    async def read(stream: lk_stt.RecognizeStream) -> None:
        async for event in stream:
            if event.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(event.alternatives[0].text)
                return

    step = 1200  # 50 ms frames
    pcm = np.concatenate([clip.pcm, np.zeros(24_000, dtype=np.int16)])  # then a second of quiet
    async with http_context.open():  # what a job context provides in a worker
        stream = recognizer.stream()
        reader = asyncio.create_task(read(stream))
        for start in range(0, len(pcm), step):
            chunk = pcm[start : start + step]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), 24_000, 1, len(chunk)))
        try:
            await asyncio.wait_for(reader, WAIT)
        finally:
            await stream.aclose()
            await recognizer.aclose()
    assert finals == [SEVEN_EIGHTS]
    [update] = [
        r.body for r in fake_openai.requests if r.path == "/v1/realtime#transcription"
        and r.body.get("type") == "session.update"
    ]  # fmt: skip
    assert update["session"]["audio"]["input"]["transcription"]["model"] == "stt-model"


async def test_the_english_tutor_prepares_its_answer_before_the_floor_is_free() -> None:
    """With audio, the realtime model is asked while the outgoing tutor still speaks; its
    answer waits in the paused output and plays only once the outgoing tutor's line has
    played out (its word that the floor is free)."""
    from harness.sim_audio import RealtimeSink

    async with FakeOpenAI(
        chat=chat_script, realtime=realtime_script, tts_seconds_per_char=0.03
    ) as fake:
        settings = settings_for(fake)
        sinks: dict[str, RealtimeSink] = {}
        first_audio: dict[str, float] = {}
        last_played: dict[str, float] = {}

        def output(job: Any) -> RealtimeSink:
            sink = sinks[job.identity] = RealtimeSink()
            sink.on(
                "playback_started",
                lambda _ev: first_audio.setdefault(job.identity, time.monotonic()),
            )
            sink.on(
                "playback_finished",
                lambda _ev: last_played.__setitem__(job.identity, time.monotonic()),
            )
            return sink

        cluster = Cluster(
            RoomHub(), {}, settings=settings, models=production_models(settings), outputs=output
        )
        try:
            first = await cluster.start_job(
                ORCHESTRATOR_WORKER, dispatch_metadata(session="s-a", student="kid")
            )
            await cluster.said(first, GREETING)
            await first.session.run(user_input="Can you help me with English? What is a noun?")
            english = await cluster.job(ENGLISH_WORKER, 1)
            await cluster.said(english, "A noun names a person, place or thing.")
        finally:
            await cluster.close()
            for sink in sinks.values():
                await sink.aclose()
        fake.check()
    line_played = last_played[first.identity]  # the orchestrator's handoff line, played out
    [asked] = [r.at for r in fake.requests if r.body.get("type") == "response.create"][:1]
    assert asked < line_played  # the answer was being made while the orchestrator still spoke
    assert first_audio[english.identity] >= line_played  # and heard only after its line
