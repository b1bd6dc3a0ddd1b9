"""`python -m bench turns --real-server`: turn-taking with real children's voices, on the
real LiveKit server, as the child hears it.

Inside `../shared/livekit-server/in-netns.sh`: the server, the model fake (LLM first token
0.4 s, speech first byte 0.3 s, a voice at a real one's pace of 15 characters a second, so a
reply lasts as long as it would) and the orchestrator worker as compose starts it. An `rtc`
student plays every clip of `--speech DIR` (a `clips.tsv` directory; by default
`../shared/speech/children`) and the espeak-ng fixtures in real time, one session per kind.
The fake STT gives each side of a pause its own part of the clip's sentence; the main tutor
answers in the child's words ("You asked: ..."), so its caption says what the reply
covered. Per kind:

- end of speech → first audio, p50 / p90: the clip's last voiced moment to the first tutor
  audio the student received (turns that were not cut off);
- cut-offs: tutor audio, or a reply's caption, before the clip's last voiced moment;
- half answers: the last whole reply the child heard does not cover the whole sentence;
- unheard: no reply and no tutor audio at all; unanswered: tutor audio but no whole reply;
- overlap: tutor audio received while the child was sounding (ms, the largest of the kind):
  20 ms frames within 30 dB of the clip's loudest and 10 dB over its noise floor, split at
  every pause of 0.3 s or more, so the tutor speaking into a child's silence is a cut-off,
  not overlap;
- overlap over the voice: the same, counted only from the first moment of each stretch where
  the child's voice has a pitch (a breath, a click or an unvoiced "f" or "s" before it is not
  counted): how long the tutor went on once the child's voice was back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from dataclasses import asdict
from pathlib import Path

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from harness import realserver
from harness.fakes.openai_server import VOICE_SECONDS_PER_CHAR, Recorded
from harness.fakes.production import GREETING, echo_script, realtime_echo_script
from harness.realserver import ModelFake
from harness.report import percentile, report, table
from harness.speech import (
    CHILDREN,
    SpokenTurn,
    TurnTranscriber,
    children_turns,
    espeak_turns,
)
from harness.student import join
from harness.turns import TurnResult, go_to_english, speak

STAGES = {
    "transcription asked": "/v1/audio/transcriptions",
    "chat asked": "/v1/chat/completions",
    "speech asked": "/v1/audio/speech",
}


REALTIME_STAGES = {  # the realtime model's client events
    "turn committed": "input_audio_buffer.commit",
    "answer asked": "response.create",
    "answer cancelled": "response.cancel",
    "answer truncated": "conversation.item.truncate",
    "item deleted": "conversation.item.delete",
    "item created": "conversation.item.create",
}


def stages(requests: list[Recorded], result: TurnResult) -> dict[str, float]:
    """When the model fake saw each request of the reply, in s after the child's last voiced
    moment (the first of each kind after it)."""
    seen = {}
    for name, path in STAGES.items():
        at = next((r.at for r in requests if r.path == path and r.at > result.spoke_until), None)
        if at is not None:
            seen[name] = round(at - result.spoke_until, 3)
    for name, kind in REALTIME_STAGES.items():  # every one since the clip began (s after its end)
        times = [round(r.at - result.spoke_until, 3) for r in requests
                 if r.path == "/v1/realtime" and r.body.get("type") == kind
                 and r.at > result.started]  # fmt: skip
        if times:
            seen[name] = times  # type: ignore[assignment]
    if result.latency is not None:
        seen["first audio heard"] = round(result.latency, 3)
    return seen


async def session(
    url: str, settings: LiveKitSettings, transcriber: TurnTranscriber, turns: list[SpokenTurn],
    mic: Path, models: ModelFake, tutor: str,
) -> list[TurnResult]:  # fmt: skip
    """One child's session: join, hear the greeting, (with `tutor` english: ask a question
    about nouns and hear the English tutor's answer), then say each turn in order."""
    room = f"turns-{secrets.token_hex(4)}"
    student = await join(url, student_token(settings, room=room, identity="kid"), "kid")
    try:
        await student.wait_for_caption(GREETING, realserver.TURN)
        if tutor == "english":
            await go_to_english(student, transcriber, mic)
        results = []
        for turn in turns:
            results.append(await speak(student, transcriber, turn, mic))
            if VERBOSE:
                assert models.fake is not None
                breakdown = stages(list(models.fake.requests), results[-1])
                print(json.dumps(asdict(results[-1]) | breakdown), file=sys.stderr)
        return results
    finally:
        await student.leave()


async def run(
    groups: list[list[SpokenTurn]], run_dir: Path, overrides: dict[str, str], tutor: str
) -> tuple[list[TurnResult], list[str]]:
    server = await realserver.start_livekit(run_dir)
    transcriber = TurnTranscriber()
    models = ModelFake(
        transcribe=transcriber,
        chat=echo_script,
        realtime=realtime_echo_script,
        tts_seconds_per_char=VOICE_SECONDS_PER_CHAR,  # a reply lasts as long as a real one
    )
    models.start()
    env = realserver.stack_env(server, models, run_dir) | overrides
    workers: list[realserver.Process] = []
    try:
        for name in ["learning-orchestrator"] + (
            ["learning-english"] if tutor == "english" else []
        ):
            workers.append(await realserver.start_worker(name, env, run_dir))
        settings = realserver.stack_settings(server.url)
        mic = run_dir / "microphone"
        mic.mkdir(exist_ok=True)
        results = []
        for group in groups:
            results += await session(server.url, settings, transcriber, group, mic, models, tutor)
        problems = realserver.worker_log_errors(*(w.log for w in workers))
    finally:
        for worker in workers:
            await worker.stop()
        models.stop()
        await server.process.stop()
    return results, problems


def figures(results: list[TurnResult]) -> dict[str, dict[str, float | int | None]]:
    """Per kind, the figures `--json` writes (other tools read these names)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for kind in dict.fromkeys(r.kind for r in results):
        of_kind = [r for r in results if r.kind == kind]
        latencies = [r.latency for r in of_kind if r.latency is not None]
        out[kind] = {
            "n": len(of_kind),
            "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
            "p90_s": round(percentile(latencies, 90), 3) if latencies else None,
            "cut_offs": sum(r.cut_off for r in of_kind),
            "half_answers": sum(r.half_answer for r in of_kind),
            "unheard": sum(r.unheard for r in of_kind),
            "unanswered": sum(r.unanswered for r in of_kind),
            "overlap_ms_max": max(r.overlap_ms for r in of_kind),
            "overlap_voice_ms_max": max(r.overlap_voice_ms for r in of_kind),
        }
    return out


def summary(results: list[TurnResult], problems: list[str]) -> str:
    rows = [
        [kind, f["n"], fmt(f["p50_s"]), fmt(f["p90_s"]), f["cut_offs"], f["half_answers"],
         f["unheard"], f["unanswered"], f["overlap_ms_max"], f["overlap_voice_ms_max"]]
        for kind, f in figures(results).items()
    ]  # fmt: skip
    headers = ["kind", "n", "p50 s", "p90 s", "cut off", "half answers", "unheard",
               "unanswered", "overlap ms (max)", "… over the voice"]  # fmt: skip
    body = table(headers, rows)
    missed = [r for r in results if r.cut_off or r.half_answer or r.unheard or r.unanswered]
    if missed:
        body += "\n\nTurns cut off, half answered, unheard or unanswered:\n"
        for r in missed:
            what = [w for w in ("cut_off", "half_answer", "unheard", "unanswered") if getattr(r, w)]
            body += (
                f"\n- {r.name} ({r.kind}): {', '.join(what)}; overlap {r.overlap_ms:.0f} ms,"
                f" {r.overlap_voice_ms:.0f} ms over the voice"
            )
    body += f"\n\nWorker log lines with ERROR: {len(problems)}"
    body += "".join(f"\n- `{line[:160]}`" for line in problems[:5])
    return body


def fmt(value: float | int | None) -> str:
    return "—" if value is None else f"{value:.2f}"


NOTES = """How to read it: seconds from the clip's last voiced moment (clips.tsv `speech_end`)
to the first tutor audio the student received, over the turns that were not cut off. A cut-off
is tutor audio or a reply before the child finished; a half answer is a last whole reply that
does not cover the whole sentence (it answered the part before the pause); overlap is tutor
audio received while the child was sounding (frames within 30 dB of the clip's loudest and
10 dB over its noise floor, split at every pause of 0.3 s or more); "over the voice" counts it
only from the first pitched moment of each stretch, not over a breath or an "f" before the
voice. The fakes' own share after the turn is decided is the model's first token (0.4 s) and
the speech's first byte (0.3 s); the voice then speaks 15 characters a second, a real voice's
pace. Children's clips: speechocean762, CC BY 4.0 (see ../shared/speech/README.md)."""

VERBOSE = False


def groups_of(turns: list[SpokenTurn]) -> list[list[SpokenTurn]]:
    """One session per kind, in the order the kinds first appear."""
    kinds = dict.fromkeys(t.kind for t in turns)
    return [[t for t in turns if t.kind == kind] for kind in kinds]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench turns --real-server", description=__doc__
    )
    parser.add_argument("--real-server", action="store_true", help="this benchmark")
    parser.add_argument("--speech", type=Path, default=CHILDREN, help="a clips.tsv directory")
    parser.add_argument("--json", type=Path, help="also write the figures per kind here")
    parser.add_argument("--kinds", help="only these kinds, comma-separated (e.g. paused,faint)")
    parser.add_argument("--limit", type=int, help="at most this many clips of each kind")
    parser.add_argument("--clips", help="only these clips, comma-separated file stems")
    parser.add_argument("--quick", action="store_true", help="CI size: one clip of each kind")
    parser.add_argument("--no-espeak", action="store_true", help="leave out the espeak fixtures")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a worker setting for this run (e.g. TURN_DETECTOR=vad); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--tutor", choices=["main", "english"], default="main",
        help="who answers the clips: the main tutor (pipeline) or, after a spoken question about "
        "nouns, the English tutor (realtime, on its own worker)",
    )  # fmt: skip
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--verbose", action="store_true", help="print each turn's result")
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
    if bad := [item for item in args.set if "=" not in item]:
        parser.error(f"--set needs NAME=VALUE: {', '.join(bad)}")
    turns = children_turns(args.speech) + ([] if args.no_espeak else espeak_turns())
    if args.kinds:
        wanted = {k.strip() for k in args.kinds.split(",")}
        turns = [t for t in turns if t.kind in wanted or t.kind.split(" ")[-1] in wanted]
    if args.clips:
        names = {c.strip() for c in args.clips.split(",")}
        turns = [t for t in turns if t.name in names]
    limit = 1 if args.quick else args.limit
    groups = [g[:limit] if limit else g for g in groups_of(turns)]
    if not any(groups):
        parser.error("no clips to play")
    if problem := realserver.realserver_problem():
        print(f"bench turns --real-server: {problem}", file=sys.stderr)
        return 2
    with realserver.run_directory() as run_dir:
        print(f"logs: {run_dir}", file=sys.stderr)
        results, problems = asyncio.run(run(groups, run_dir, overrides, args.tutor))
    if args.json:
        args.json.write_text(json.dumps(figures(results), indent=2) + "\n")
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the defaults"
    who = " (the English tutor, realtime)" if args.tutor == "english" else ""
    report(
        f"Turn-taking with real children on the real server{who} ({settings})",
        summary(results, problems),
        append=not args.no_append,
        notes=NOTES,
    )
    return 0
