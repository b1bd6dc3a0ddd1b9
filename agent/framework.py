"""Every use of livekit-agents' and the rtc SDK's private internals, in one place.

Checked against livekit-agents 1.8.x and livekit (rtc) 1.1.x. An upgrade of either re-reads
each function below against the installed source; nothing else in `agent/` touches a
private attribute of the framework.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, inference, tts, vad

CHECKED_AGAINST = {"livekit-agents": "1.8", "livekit": "1.1"}


def set_preemptive_tts(agent: Agent, enabled: bool) -> None:
    """Let the agent's next reply synthesise speech before it is its turn to play (the
    framework reads this per agent from `Agent._turn_handling`; no public setter)."""
    turn_handling = agent._turn_handling
    preemptive = {**turn_handling.get("preemptive_generation", {})}
    preemptive["preemptive_tts"] = enabled
    agent._turn_handling = {**turn_handling, "preemptive_generation": preemptive}


def skip_close_transcript(session: AgentSession[Any]) -> None:
    """Close without waiting for a last transcript (the framework waits up to 2 s by
    default, an `AgentSession` option with no public setter for one close)."""
    session._opts.session_close_transcript_timeout = 0.0


def voice_options(voice: tts.TTS) -> object | None:
    """A TTS plugin's options (which voice it speaks with), where the plugin keeps them."""
    return getattr(voice, "_opts", None)


def on_process_pool(server: AgentServer, event: str, callback: Callable[[Any], None]) -> None:
    """Listen to the server's job-process pool (it exists once the server runs)."""
    server._proc_pool.on(event, callback)


def limit_idle_processes(server: AgentServer, free: int) -> None:
    """Keep at most `free` job processes warm, never more than the pool was built with."""
    pool = server._proc_pool
    pool.set_target_idle_processes(min(pool._default_num_idle_processes, free))


def native_vad_stream(
    detector: inference.VAD, model: Callable[[Callable[[], float]], Any]
) -> vad.VADStream:
    """The framework's native VAD stream (resampling, thresholds, minimum durations, prefix
    padding, the frames handed to the STT) around another model in the shape of its native
    Silero (`predict` of 512 int16 samples at 16 kHz, `reset`). `model` is built with a
    reader of the stream's activation threshold, which `update_options` may change."""
    from livekit.agents.inference.vad import _VADStream

    stream = _VADStream(detector, replace(detector._opts), executor=None)
    stream._native_vad = model(lambda: stream._opts.activation_threshold)
    detector._streams.add(stream)
    return stream


# the framework's own warm-up of a job process (imported by its forkserver)
FRAMEWORK_PRELOAD = "livekit.agents.ipc._preload"


def create_ffi_client() -> None:
    """Create the rtc SDK's process-wide FFI client now (it is made lazily, without a lock,
    on first use)."""
    from livekit.rtc._ffi_client import FfiClient

    FfiClient.instance  # noqa: B018  (created on first access)


def build_aiohttp_tls() -> None:
    """Build the framework's per-process aiohttp TLS context (the realtime websocket's); a
    framework without it builds its context its own way."""
    from livekit.agents.utils import http_context

    with contextlib.suppress(AttributeError):
        http_context._create_ssl_context()
