"""`python -m bench turns`: end of a student's speech to the tutor's first audio, and how
often a child pausing mid-sentence is cut off, per turn-handling configuration.

The real orchestrator session (real Silero VAD, the framework's real end-of-turn model, fake
STT 0.2 s / LLM first token 0.3 s / TTS first byte 0.15 s) hears spoken turns made with
espeak-ng (`harness/fixtures/turns/`, see `make_turns.sh`) at real-time pace: short and long
complete questions, questions with one or two mid-sentence pauses of 0.6 to 1.5 s, and a
trailing "um". Each configuration runs every clip; the framework's defaults and the
project's chosen defaults (`agent/turns/options.py`, from `Settings`) run side by side.

- latency: the question's last sound to the answer's first audio (complete questions);
- floor: what the fakes need after the speech ends: the VAD's silence + STT + LLM first token
  + TTS first byte; ratio = latency / floor;
- cut off: a paused question whose turn was committed before the child had finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import TURN_CLIPS as FIXTURES
from harness.report import percentile, report, table

STT_LATENCY, LLM_TTFT, TTS_TTFB = 0.2, 0.3, 0.15
CONCURRENT = 3  # sessions at once (each clip is its own session)
ANSWER = "Good question! Here is the answer."


@dataclass(frozen=True)
class Config:
    name: str
    turn_handling: Mapping[str, Any]
    vad_silence: float = 0.55  # Silero's default min_silence_duration
    vad_activation: float = 0.5


@dataclass
class ClipResult:
    clip: str
    latency: float | None  # speech end -> first answer audio
    cut_off: bool


@dataclass
class ConfigResult:
    config: Config
    clips: list[ClipResult] = field(default_factory=list)

    def latencies(self, kinds: tuple[str, ...]) -> list[float]:
        return [
            c.latency for c in self.clips if c.latency is not None and c.clip.split("-")[0] in kinds
        ]

    def cut_off_rate(self) -> float:
        paused = [c for c in self.clips if c.clip.startswith("pause")]
        return sum(c.cut_off for c in paused) / len(paused) if paused else 0.0


def framework_defaults() -> Config:
    return Config("framework defaults", {})


# other configurations, to show the trade-off (preemptive TTS: the answer is ready at commit)
CANDIDATES = (
    Config(
        "model, max 1.0 s, VAD 0.3 s, preemptive TTS",
        {"endpointing": {"max_delay": 1.0}, "preemptive_generation": {"preemptive_tts": True}},
        vad_silence=0.3,
    ),
    Config(
        "model, dynamic 0.3-1.5 s, VAD 0.3 s, preemptive TTS",
        {
            "endpointing": {"mode": "dynamic", "min_delay": 0.3, "max_delay": 1.5},
            "preemptive_generation": {"preemptive_tts": True},
        },
        vad_silence=0.3,
    ),
    Config(
        "VAD only, 1.3 s after speech, preemptive TTS",
        {
            "turn_detection": "vad",
            "endpointing": {"min_delay": 1.0},
            "preemptive_generation": {"preemptive_tts": True},
        },
        vad_silence=0.3,
    ),
)


def project_defaults() -> Config:
    from agent.config.settings import TurnSettings, load_settings
    from agent.turns.options import turn_handling

    settings = load_settings(TurnSettings)
    return Config(
        "project defaults",
        turn_handling(settings),
        vad_silence=settings.vad_min_silence_duration,
        vad_activation=settings.vad_activation_threshold,
    )


async def run_clip(config: Config, path: Path, vad: Any) -> ClipResult:
    from livekit.agents import ConversationItemAddedEvent, llm

    from agent.conversation.routing import build_tutor
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata, TutorModels
    from harness.fakes.audio import PacedTTS
    from harness.fakes.llm import ScriptedLLM, say
    from harness.sim_audio import FixedTranscriptSTT, RealtimeSink, SimStudent, load_clip

    clip = load_clip(path, sample_rate=24_000)
    sink = RealtimeSink()
    student = SimStudent(clip, sink, talk_seconds=clip.duration + 8.0, max_questions=1)
    model = ScriptedLLM([say("Hi! What would you like to learn?")] + [say(ANSWER)] * 4,
                        ttft=LLM_TTFT)  # fmt: skip
    voice = PacedTTS(ttfb=TTS_TTFB, seconds_per_char=0.04, speedup=4.0)
    userdata = SessionUserdata(tutor_models={"orchestrator": TutorModels(llm=model, tts=voice)})
    session = create_session(
        userdata,
        stt=FixedTranscriptSTT("What is it?", latency=STT_LATENCY),
        vad=vad,
        llm=model,
        tts=voice,
        turn_handling=dict(config.turn_handling),
    )
    session.input.audio = student
    session.output.audio = sink
    commits: list[float] = []

    def on_item(event: ConversationItemAddedEvent) -> None:
        if isinstance(event.item, llm.ChatMessage) and event.item.role == "user":
            commits.append(time.monotonic())

    session.on("conversation_item_added", on_item)
    async with session:
        await session.start(build_tutor("orchestrator", userdata))
        with contextlib.suppress(TimeoutError):  # no answer: counted as unanswered
            await asyncio.wait_for(student.answered.wait(), clip.duration + 20.0)
        ended = student.stats.question_ends
    await sink.aclose()
    latency = student.stats.answer_latencies[0] if student.stats.answer_latencies else None
    cut_off = bool(commits and ended and commits[0] < ended[0])
    return ClipResult(path.stem, latency, cut_off)


async def run_config(config: Config, clips: list[Path], repeat: int) -> ConfigResult:
    from livekit.plugins import silero

    vad = silero.VAD.load(
        min_silence_duration=config.vad_silence, activation_threshold=config.vad_activation
    )
    result = ConfigResult(config)
    pending = [path for _ in range(repeat) for path in clips]
    for start in range(0, len(pending), CONCURRENT):
        batch = pending[start : start + CONCURRENT]
        result.clips += await asyncio.gather(*(run_clip(config, p, vad) for p in batch))
    return result


def floor(config: Config) -> float:
    return config.vad_silence + STT_LATENCY + LLM_TTFT + TTS_TTFB


def rows(results: list[ConfigResult]) -> list[list[object]]:
    out: list[list[object]] = []
    for r in results:
        complete = r.latencies(("short", "long"))
        paused = r.latencies(("pause1", "pause2"))
        um = r.latencies(("um",))
        lowest = floor(r.config)

        def ms(values: list[float], q: float) -> str:
            return f"{percentile(values, q):.2f}" if values else "-"

        out.append(
            [
                r.config.name,
                f"{ms(complete, 50)} / {ms(complete, 95)}",
                f"{percentile(complete, 50) / lowest:.2f} / {percentile(complete, 95) / lowest:.2f}"
                if complete
                else "-",
                f"{lowest:.2f}",
                f"{ms(paused, 50)} / {ms(paused, 95)}",
                f"{ms(um, 50)}",
                f"{r.cut_off_rate() * 100:.0f}%",
                f"{sum(c.latency is None for c in r.clips)}",
            ]
        )
    return out


NOTES = """How to read it: seconds from the question's last sound to the answer's first audio,
p50 / p95, on the complete questions (short and long), then on the paused ones and those
ending in "um"; the floor is what the fakes and the VAD need at the least (VAD silence + STT
+ LLM first token + TTS first byte); cut off is the share of paused questions whose turn was
committed in a pause, before the child had finished; unanswered counts clips with no answer
within 20 s. Almost all of the framework defaults' latency is the end-of-turn wait: the
local end-of-turn model is not confident on these clips, so the turn waits for the
endpointing's maximum delay."""


async def run(configs: list[Config], repeat: int) -> list[ConfigResult]:
    clips = sorted(FIXTURES.glob("*.wav"))
    if not clips:
        raise SystemExit(f"no clips in {FIXTURES}: run harness/fixtures/make_turns.sh")
    return [await run_config(config, clips, repeat) for config in configs]


def main(argv: list[str]) -> int:
    if "--real-server" in argv:
        from bench import turns_realserver

        return turns_realserver.main(argv)
    parser = argparse.ArgumentParser(prog="python -m bench turns", description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="runs of every clip")
    parser.add_argument("--quick", action="store_true", help="CI size: the project defaults once")
    parser.add_argument(
        "--candidates", action="store_true", help="also run other configurations (trade-off)"
    )
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    configs = [project_defaults()] if args.quick else [framework_defaults(), project_defaults()]
    if args.candidates and not args.quick:
        configs += CANDIDATES
    results = asyncio.run(run(configs, 1 if args.quick else max(1, args.repeat)))
    headers = [
        "configuration",
        "complete: p50 / p95 s",
        "ratio to floor p50 / p95",
        "floor s",
        "paused: p50 / p95 s",
        "um: p50 s",
        "cut off (paused)",
        "unanswered",
    ]
    report("Turn latency and cut-offs", table(headers, rows(results)),
           append=not args.no_append, notes=NOTES)  # fmt: skip
    return 0
