"""How a pipeline session decides that the student has finished speaking, from the settings.

The framework's defaults wait for its end-of-turn model, which is rarely confident on a
child's short question, so most turns wait the endpointing's full maximum delay. These
settings (chosen by measurement: `python -m bench turns`, see BENCHMARKS.md) trade that
wait against cutting off a child who pauses mid-sentence.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import vad
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.config.settings import TurnSettings


def turn_handling(settings: TurnSettings) -> TurnHandlingOptions:
    """The session's turn handling: detector, endpointing, preemptive generation."""
    options: dict[str, Any] = {
        "endpointing": {
            "mode": settings.endpointing_mode,
            "min_delay": settings.min_endpointing_delay,
            "max_delay": settings.max_endpointing_delay,
        },
        "preemptive_generation": {
            "enabled": settings.preemptive_generation,
            "preemptive_tts": settings.preemptive_tts,
        },
        "interruption": {
            "min_duration": settings.interruption_min_duration,
            "false_interruption_timeout": settings.false_interruption_timeout,
        },
    }
    if settings.turn_detector != "model":
        options["turn_detection"] = settings.turn_detector
    elif settings.eot_threshold is not None:  # else the framework's model at its own threshold
        from livekit.agents import inference

        options["turn_detection"] = inference.TurnDetector(
            version="v1-mini", unlikely_threshold=settings.eot_threshold
        )
    return options  # type: ignore[return-value]


def realtime_turns(settings: TurnSettings, vad: vad.VAD | None) -> dict[str, Any]:
    """What a realtime tutor's session adds to end the student's turns. With
    `REALTIME_TURN_DETECTION=local`, this product's VAD and the pipeline's endpointing and
    interruption: the VAD alone decides (the model has no transcript before it answers) and
    the framework switches the model's own turn detection off. With `server`: nothing, the
    model's turn detection stands."""
    if settings.realtime_turn_detection == "server":
        return {}
    options = dict(turn_handling(settings))
    options["turn_detection"] = "vad"
    del options["preemptive_generation"]  # the model answers only once the turn is committed
    return {"vad": vad, "turn_handling": options}


def vad_options(settings: TurnSettings) -> dict[str, float]:
    """Silero VAD options: how much silence ends speech, how loud speech must be."""
    return {
        "min_silence_duration": settings.vad_min_silence_duration,
        "activation_threshold": settings.vad_activation_threshold,
    }


def load_vad(settings: TurnSettings) -> vad.VAD | None:
    """The pipeline's local VAD (`VAD_ENGINE`), loaded once per job process; None: none."""
    if settings.vad_engine == "none":
        return None
    if settings.vad_engine == "native":
        from livekit.agents import inference

        return inference.VAD(**vad_options(settings))
    if settings.vad_engine == "silero_firered":
        from agent.turns.firered import SileroFireRedVAD

        return SileroFireRedVAD(**vad_options(settings))
    from livekit.plugins import silero  # only pipeline workers load the VAD

    return silero.VAD.load(**vad_options(settings))
