"""`python -m bench realserver`: the whole conversation on the real LiveKit server, measured
as the student hears it.

Inside `../shared/livekit-server/in-netns.sh`: the server, the wire-compatible model fake
(LLM first token 0.4 s, speech first byte 0.3 s), both workers as processes started the way
compose starts them, and an `rtc` student speaking espeak-ng questions in real time. Per
conversation it reports the silence at each handover (the outgoing tutor's last audio to the
incoming tutor's first, as received by the student), the end of the student's speech to the
first tutor audio broken down by what the model fake saw arrive (transcription request: VAD
end of speech; chat request: end of turn decided; first token; speech request; first audio
heard), and the last tutor's departure after the student's. The fake voices are a tone with
no padding, so the silences are net of voice padding.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from livekit import api

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from harness import realserver
from harness.fakes.openai_server import Recorded
from harness.fakes.production import (
    FIFTY_SIX,
    GREETING,
    NAPOLEON,
    NAPOLEON_ANSWER,
    NOUN,
    NOUN_ANSWER,
    SEVEN_EIGHTS,
)
from harness.realserver import ModelFake
from harness.report import percentile, report, table
from harness.student import Student, join

QUESTIONS = (
    # question, the caption that answers it, the handovers on the way (caption before, after)
    (
        SEVEN_EIGHTS,
        FIFTY_SIX,
        [("orchestrator → math (in-session)", "Mathematics tutor!", FIFTY_SIX)],
    ),
    (NOUN, NOUN_ANSWER, [("math → english (crossing)", "English tutor!", NOUN_ANSWER)]),
    (
        NAPOLEON,
        NAPOLEON_ANSWER,
        [
            ("english → orchestrator (crossing back)", "main tutor!", "History tutor!"),
            ("orchestrator → history (in-session)", "History tutor!", NAPOLEON_ANSWER),
        ],
    ),
)
VERBOSE = False  # --verbose: each conversation's timeline and model requests, to stderr
STAGES = (
    "transcription asked (VAD end of speech)",
    "chat asked (preemptive)",
    "first token",
    "answer's speech asked (turn committed)",
    "first audio heard",
)


@dataclass
class Conversation:
    greeting: float = 0.0
    turns: list[dict[str, float]] = field(default_factory=list)  # stage -> s after speech end
    silences: dict[str, float] = field(default_factory=dict)
    leave: float = 0.0


def first_after(requests: list[Recorded], path: str, after: float) -> float | None:
    return next((r.at for r in requests if r.path == path and r.at > after), None)


def turn_breakdown(requests: list[Recorded], spoke_until: float, heard: float) -> dict[str, float]:
    """When each stage of the reply was seen, in seconds after the student's speech ended."""
    stt = first_after(requests, "/v1/audio/transcriptions", spoke_until)
    chat = first_after(requests, "/v1/chat/completions", stt or spoke_until)
    realtime = next(
        (
            r.at
            for r in requests
            if r.path == "/v1/realtime" and r.at > spoke_until
            and r.body.get("type") in ("response.create", "conversation.item.create")
        ),
        None,
    )  # fmt: skip
    decided = chat or realtime
    speech = first_after(requests, "/v1/audio/speech", decided or spoke_until)
    stages = dict(
        zip(
            STAGES,
            (stt, decided, decided + realserver.LLM_TTFT if decided else None, speech, heard),
            strict=True,
        )
    )
    return {name: at - spoke_until for name, at in stages.items() if at is not None}


def handover_silence(student: Student, before: str, after: str) -> float:
    """The longest silence, across every tutor, from the caption `before` opened until the
    caption `after` did (plus its first second): the gap between two voices."""
    start, end = student.caption_from(before), student.caption_from(after)
    assert start is not None and end is not None, student.report()
    loud = sorted(
        t for times in student.loud.values() for t in times if start.at <= t <= end.at + 1.0
    )
    return max((b - a for a, b in itertools.pairwise(loud)), default=0.0) - 0.01


async def one_conversation(
    models: ModelFake, settings: LiveKitSettings, url: str, server_api: api.LiveKitAPI, speech: Path
) -> Conversation:
    room = f"bench-{secrets.token_hex(4)}"
    token = student_token(settings, room=room, identity="maya")
    joined_at = time.monotonic()
    student = await join(url, token, "maya")
    result = Conversation()
    try:
        await student.wait_for_caption(GREETING, realserver.TURN)
        first = min(t for times in student.loud.values() for t in times)
        result.greeting = first - joined_at
        for question, answer, handovers in QUESTIONS:
            spoke_until = await realserver.ask(student, models, speech, question)
            await student.wait_for_caption(answer, realserver.TURN)
            heard = min(t for times in student.loud.values() for t in times if t > spoke_until)
            assert models.fake is not None
            result.turns.append(turn_breakdown(list(models.fake.requests), spoke_until, heard))
            for name, before, after in handovers:
                result.silences[name] = handover_silence(student, before, after)
        await student.wait_for(lambda: student.quiet_since(1.0), realserver.TURN, "quiet")
        if VERBOSE:
            print(student.report(), file=sys.stderr)
            assert models.fake is not None
            t0 = min(student.joined.values())
            for r in models.fake.requests:
                if r.at > t0 and r.path != "/v1/realtime#transcription":
                    kind = r.body.get("type", "") if isinstance(r.body, dict) else ""
                    model = r.body.get("model", "") if isinstance(r.body, dict) else ""
                    if kind != "input_audio_buffer.append":
                        print(f"  +{r.at - t0:6.2f} {r.path} {kind} {model}", file=sys.stderr)
    finally:
        left = await student.leave()
    result.leave = await realserver.wait_until_empty(server_api, room, interval=0.02) - left
    return result


async def run(
    conversations: int, run_dir: Path, overrides: dict[str, str]
) -> tuple[list[Conversation], list[str]]:
    server = await realserver.start_livekit(run_dir)
    models = ModelFake()
    models.start()
    env = realserver.stack_env(server, models, run_dir) | overrides
    workers = []
    try:
        for name in ("learning-orchestrator", "learning-english"):
            workers.append(await realserver.start_worker(name, env, run_dir))
        settings = realserver.stack_settings(server.url)
        speech = run_dir / "speech"
        speech.mkdir(exist_ok=True)
        server_api = api.LiveKitAPI(server.http_url, realserver.API_KEY_ID, realserver.API_SECRET)
        try:
            results = [
                await one_conversation(models, settings, server.url, server_api, speech)
                for _ in range(conversations)
            ]
        finally:
            await server_api.aclose()
        logs = [w.log for w in workers]
        problems = realserver.worker_log_errors(*logs) + realserver.worker_log_stalls(*logs)
    finally:
        for process in workers:
            await process.stop()
        models.stop()
        await server.process.stop()
    return results, problems


def summary(results: list[Conversation], problems: list[str]) -> str:
    greeting = ["greeting: joined → first audio", *p50_max([r.greeting for r in results])]
    rows: list[list[object]] = [greeting]
    for name in results[0].silences:
        rows.append([f"silence {name}", *p50_max([r.silences[name] for r in results])])
    rows.append(["last tutor gone after the student left", *p50_max([r.leave for r in results])])
    body = table(["what the student hears", "p50 s", "max s"], rows)
    turns: list[list[object]] = []
    for index, (question, _, _) in enumerate(QUESTIONS):
        stages = [r.turns[index] for r in results]
        turns.append(
            [
                question,
                *(fmt(percentile([s[n] for s in stages if n in s], 50)) for n in STAGES),
            ]
        )
    body += "\n\nEnd of the student's speech → first tutor audio, p50 s after the speech ended:\n\n"
    body += table(["question", *STAGES], turns)
    body += f"\n\nWorker log lines with ERROR or an event loop blocked over 100 ms: {len(problems)}"
    body += "".join(f"\n- `{line[:160]}`" for line in problems[:10])
    return body


def fmt(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"  # NaN: the stage was not seen


def p50_max(values: list[float]) -> tuple[float, float]:
    return percentile(values, 50), max(values)


NOTES = """How to read it: a real LiveKit server (v1.9.12) in its network namespace, both
workers as processes (`python -m livekit.agents start ...`, two warm job processes each), an
`rtc` student speaking espeak-ng questions, the model fake with LLM first token 0.4 s and
speech first byte 0.3 s. Silences are measured on the audio the student received (a tone
without padding, so net of voice padding). Leave: the student's disconnect to the server
listing neither an agent nor a dispatch in the room (polled every 20 ms).

The breakdown: seconds after the end of the student's speech at which the model fake saw
each request (first token = chat request + the fake's 0.4 s). 'Chat asked' comes at the
final transcript because replies are generated preemptively; the reply is held until the
turn is committed, seen as the answer's speech request (handoff lines play from the line
cache and ask for nothing). The third question is heard by the realtime English tutor
(its turn ended by the worker's VAD, then committed to the model), so only its first audio
is measured."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench realserver", description=__doc__)
    parser.add_argument("--conversations", type=int, default=3, help="whole conversations")
    parser.add_argument("--quick", action="store_true", help="CI size: one conversation")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--verbose", action="store_true", help="print each timeline")
    parser.add_argument(
        "--turn-detector",
        choices=("model", "vad", "stt"),
        help="the workers' TURN_DETECTOR (default: the setting's default, vad)",
    )
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    if problem := realserver.realserver_problem():
        print(f"bench realserver: {problem}", file=sys.stderr)
        return 2
    with realserver.run_directory() as run_dir:
        print(f"logs: {run_dir}", file=sys.stderr)
        overrides = {"TURN_DETECTOR": args.turn_detector} if args.turn_detector else {}
        if args.turn_detector == "model":  # the end-of-turn model listens to 0.25 s at least
            overrides["VAD_MIN_SILENCE_DURATION"] = "0.25"
        count = 1 if args.quick else max(1, args.conversations)
        results, problems = asyncio.run(run(count, run_dir, overrides))
    report(
        "Real server: handovers, turns and leaving"
        + (f" (TURN_DETECTOR={args.turn_detector})" if args.turn_detector else ""),
        summary(results, problems),
        append=not args.no_append,
        notes=NOTES,
    )
    return 0
