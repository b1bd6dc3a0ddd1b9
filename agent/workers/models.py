"""Production model wiring: OpenAI STT/LLM/TTS per tutor, from the settings."""

from __future__ import annotations

from livekit.plugins import openai

from agent.dispatch import Dispatcher, DispatchPolicy
from agent.settings import Settings
from agent.state import TutorKind, TutorModels

PIPELINE_TUTORS: tuple[TutorKind, ...] = ("orchestrator", "math", "history", "english")


def llm_model_for(settings: Settings, kind: TutorKind) -> str:
    return {
        "orchestrator": settings.orchestrator_llm_model,
        "math": settings.math_llm_model,
        "history": settings.history_llm_model,
        "english": settings.english_llm_model,
    }[kind]


def voice_for(settings: Settings, kind: TutorKind) -> str:
    return {
        "orchestrator": settings.orchestrator_voice,
        "math": settings.math_voice,
        "history": settings.history_voice,
        "english": settings.english_voice,
    }[kind]


def pipeline_tutor_models(settings: Settings) -> dict[TutorKind, TutorModels]:
    """An LLM and a TTS voice for each pipeline tutor (they share the session's STT)."""
    key = settings.openai_api_key.get_secret_value()
    return {
        kind: TutorModels(
            llm=openai.LLM(model=llm_model_for(settings, kind), api_key=key),
            tts=openai.TTS(model=settings.tts_model, voice=voice_for(settings, kind), api_key=key),
        )
        for kind in PIPELINE_TUTORS
    }


def session_stt(settings: Settings) -> openai.STT:
    return openai.STT(model=settings.stt_model, api_key=settings.openai_api_key.get_secret_value())


def english_realtime_models(settings: Settings) -> TutorModels:
    """The English tutor on its own worker: a speech-to-speech model, and a TTS of the same
    voice for the fixed lines it speaks with `session.say`."""
    key = settings.openai_api_key.get_secret_value()
    return TutorModels(
        llm=openai.realtime.RealtimeModel(
            model=settings.realtime_model, voice=settings.english_voice, api_key=key
        ),
        tts=openai.TTS(model=settings.tts_model, voice=settings.english_voice, api_key=key),
    )


def dispatcher_for(settings: Settings) -> Dispatcher:
    """One LiveKit API client per job (the caller closes it when the job ends)."""
    return Dispatcher.from_credentials(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
        policy=DispatchPolicy(
            attempt_timeout=settings.dispatch_attempt_timeout,
            max_attempts=settings.dispatch_max_attempts,
        ),
    )
