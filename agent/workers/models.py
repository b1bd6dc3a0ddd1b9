"""Production model wiring: an OpenAI-compatible endpoint per role, from the settings, and
each tutor's models and voice from the roster.

Every client gets its base URL, key and model passed explicitly (nothing is left to the
environment variables the SDK happens to read): `<ROLE>_BASE_URL` / `<ROLE>_API_KEY`
override `OPENAI_BASE_URL` / `OPENAI_API_KEY` for that role. With `AZURE_OPENAI_ENDPOINT`
every role goes through the plugins' Azure constructors, the model names being deployments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2
import openai as openai_sdk
from livekit.plugins import openai

from agent.config.roster import Roster, roster_for
from agent.config.settings import Settings
from agent.conversation.state import TutorKind, TutorModels
from agent.dispatch.client import Dispatcher, DispatchPolicy
from agent.workers.tls import model_http_client

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Endpoint:
    """Where one role's requests go (`base_url` None only with Azure: its endpoint)."""

    role: str
    base_url: str | None
    api_key: str
    azure: bool = False

    def describe(self) -> str:
        return self.base_url or "Azure OpenAI"


def endpoint(settings: Settings, role: str) -> Endpoint:
    """The base URL and key of `role` (llm, stt, tts, realtime, moderation)."""
    key = getattr(settings, f"{role}_api_key")
    if settings.azure_openai_endpoint:
        key = key or settings.azure_openai_api_key
        base = getattr(settings, f"{role}_base_url") or None
        return Endpoint(role, base, key.get_secret_value() if key else "", azure=True)
    key = key or settings.openai_api_key
    base = getattr(settings, f"{role}_base_url") or settings.openai_base_url or OPENAI_BASE_URL
    return Endpoint(role, base.rstrip("/"), key.get_secret_value() if key else "")


def _azure(settings: Settings, point: Endpoint, deployment: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "azure_endpoint": settings.azure_openai_endpoint,
        "azure_deployment": deployment,
        "api_key": point.api_key,
    }
    if settings.azure_openai_api_version:
        options["api_version"] = settings.azure_openai_api_version
    return options


# what the plugins give the clients they build themselves
PLUGIN_TIMEOUT = httpx2.Timeout(connect=15.0, read=5.0, write=5.0, pool=5.0)
PLUGIN_LIMITS = httpx2.Limits(
    max_connections=50, max_keepalive_connections=50, keepalive_expiry=120
)


def plugin_client(point: Endpoint) -> openai_sdk.AsyncOpenAI:
    """An `openai` client for a plugin (as the plugin would build it: no retries, its
    timeouts and pool) on the process's shared TLS context; one serves every tutor."""
    return openai_sdk.AsyncOpenAI(
        api_key=point.api_key,
        base_url=point.base_url,
        max_retries=0,
        http_client=model_http_client(
            timeout=PLUGIN_TIMEOUT, limits=PLUGIN_LIMITS, follow_redirects=True
        ),
    )


def chat_llm(
    settings: Settings, model: str, client: openai_sdk.AsyncOpenAI | None = None
) -> openai.LLM:
    point = endpoint(settings, "llm")
    if point.azure:
        return openai.LLM.with_azure(model=model, **_azure(settings, point, model))
    return openai.LLM(model=model, client=client or plugin_client(point))


def voice_tts(
    settings: Settings, voice: str, client: openai_sdk.AsyncOpenAI | None = None
) -> openai.TTS:
    point = endpoint(settings, "tts")
    options: dict[str, Any] = {
        "model": settings.tts_model,
        "voice": voice,
        "response_format": settings.tts_response_format,
    }
    if point.azure:
        return openai.TTS.with_azure(**options, **_azure(settings, point, settings.tts_model))
    return openai.TTS(**options, client=client or plugin_client(point))


def pipeline_tutor_models(
    settings: Settings, roster: Roster | None = None
) -> dict[TutorKind, TutorModels]:
    """A chat model and a TTS voice for every tutor of the roster on a pipeline worker (they
    share the session's STT): its own, or, for a tutor of a realtime worker, the fallback it
    runs on when that worker cannot be reached."""
    roster = roster or roster_for(settings)
    llm_point, tts_point = endpoint(settings, "llm"), endpoint(settings, "tts")
    # one client per role for every tutor (its connection pool shared too)
    llm_client = None if llm_point.azure else plugin_client(llm_point)
    tts_client = None if tts_point.azure else plugin_client(tts_point)
    return {
        kind: TutorModels(
            llm=chat_llm(settings, roster.pipeline_model(kind), llm_client),
            tts=voice_tts(settings, spec.voice, tts_client),
        )
        for kind, spec in roster.tutors.items()
    }


def session_stt(settings: Settings) -> openai.STT:
    point = endpoint(settings, "stt")
    if point.azure:
        return openai.STT.with_azure(
            model=settings.stt_model,
            use_realtime=settings.stt_streaming,
            **_azure(settings, point, settings.stt_model),
        )
    return openai.STT(
        model=settings.stt_model,
        client=plugin_client(point),
        use_realtime=settings.stt_streaming,  # stream while the child speaks
    )


def realtime_tutor_models(settings: Settings, roster: Roster, kind: TutorKind) -> TutorModels:
    """A tutor on its own realtime worker: its speech-to-speech model, and a TTS of the same
    voice for the fixed lines it speaks with `session.say`."""
    spec = roster.tutor(kind)
    point = endpoint(settings, "realtime")
    if point.azure:
        azure = _azure(settings, point, spec.model)
        azure.pop("api_version", None)  # the realtime GA API takes no version
        realtime = openai.realtime.RealtimeModel.with_azure(voice=spec.voice, **azure)
    else:
        realtime = openai.realtime.RealtimeModel(
            model=spec.model,
            voice=spec.voice,
            api_key=point.api_key,
            base_url=point.base_url,
        )
    return TutorModels(llm=realtime, tts=voice_tts(settings, spec.voice))


def moderation_client(settings: Settings) -> openai_sdk.AsyncOpenAI:
    """The `openai` client the moderation endpoint is called with (model: MODERATION_MODEL)."""
    point = endpoint(settings, "moderation")
    if point.azure:
        return openai_sdk.AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_key=point.api_key,
            api_version=settings.azure_openai_api_version or None,
        )
    return openai_sdk.AsyncOpenAI(
        api_key=point.api_key, base_url=point.base_url, http_client=model_http_client()
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
