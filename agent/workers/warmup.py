"""What a job would otherwise do the first time on its event loop, done at prewarm instead.

Each item here was seen holding a job's loop for 100-400 ms on the real server (the
framework's loop monitor names them): lazy imports, the first build of a pydantic model,
the records models' mapper set-up (the TLS contexts: `agent.workers.tls`, in the
forkserver). Doing them once per job process, before a job is assigned, costs nothing a
student waits for.
"""

from __future__ import annotations


def warm_http_clients() -> None:
    """The OpenAI clients' first request: anyio's asyncio backend (imported lazily by the
    connection pool) and the models page type the LLM plugin's own prewarm lists. The TLS
    contexts are built when `agent.workers.tls` is imported (in the forkserver)."""
    import anyio._backends._asyncio
    import anyio._core._synchronization  # noqa: F401
    import openai.lib.streaming.chat  # noqa: F401  (the chat stream's first chunk)
    from openai.pagination import AsyncPage
    from openai.types import Model

    AsyncPage[Model]  # builds the generic model once


def warm_realtime_types() -> None:
    """The realtime session's first `session.update`: its pydantic types finish building on
    first use."""
    from openai.types.realtime import (
        RealtimeAudioConfig,
        RealtimeAudioConfigInput,
        RealtimeAudioConfigOutput,
        RealtimeSessionCreateRequest,
        SessionUpdateEvent,
        realtime_audio_formats,
    )

    pcm = realtime_audio_formats.AudioPCM(rate=24_000, type="audio/pcm")
    audio = RealtimeAudioConfig(
        input=RealtimeAudioConfigInput(format=pcm),
        output=RealtimeAudioConfigOutput(format=pcm, voice="alloy"),
    )
    session = RealtimeSessionCreateRequest(
        type="realtime", model="warm-up", output_modalities=["audio"], audio=audio
    )
    SessionUpdateEvent(type="session.update", session=session).model_dump(exclude_unset=True)


def warm_records_models() -> None:
    """SQLAlchemy configures the records' mappers on their first query (a job's first write)."""
    from sqlalchemy.orm import configure_mappers

    import agent.records.schema  # noqa: F401

    configure_mappers()
