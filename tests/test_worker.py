"""The orchestrator worker's wiring, without a LiveKit server or network."""

from __future__ import annotations

from livekit.plugins import openai

from agent.settings import load_settings
from agent.workers import orchestrator
from agent.workers.models import pipeline_tutor_models


def test_server_registers_learning_orchestrator_for_explicit_dispatch() -> None:
    server = orchestrator.server
    assert server._agent_name == "learning-orchestrator"
    assert server._entrypoint_fnc is orchestrator.entrypoint
    assert server.setup_fnc is orchestrator.prewarm


def test_each_pipeline_tutor_gets_its_model_and_a_distinct_voice() -> None:
    settings = load_settings(math_llm_model="gpt-4.1", history_voice="onyx")
    models = pipeline_tutor_models(settings)

    assert set(models) == {"orchestrator", "math", "history", "english"}
    assert all(
        isinstance(m.llm, openai.LLM) and isinstance(m.tts, openai.TTS) for m in models.values()
    )
    assert models["math"].llm.model == "gpt-4.1"
    voices = {kind: m.tts._opts.voice for kind, m in models.items()}
    assert voices["history"] == "onyx"
    assert len(set(voices.values())) == len(voices)
