"""`python -m bench moderation`: what moderating every turn adds to a turn's latency.

The real orchestrator tutor in a real `AgentSession`, fake models with the usual profile
(LLM first token 300 ms then ~50 tokens/s, TTS first byte 150 ms then real time) and a
real-time audio output, answers student turns with moderation off and on, in the same run.
With moderation on, the student's turn and every sentence of the reply are checked by the
real `openai` client against the wire-compatible moderation endpoint on 127.0.0.1, which
answers after 150 ms. Latency: from the student's turn to the first audio of the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import openai

from harness.fakes.audio import PacedTTS, PlaybackLog, RealtimeAudioOutput
from harness.fakes.llm import ScriptedLLM, say
from harness.fakes.openai_server import API_KEY, FakeOpenAI
from harness.report import percentile, report, table

ANSWER = "Seven times eight is fifty-six. Can you tell me what seven times nine is?"
LLM_TTFT = 0.3
CHARS_PER_SECOND = 200.0  # ~50 tokens/s
TTS_TTFB = 0.15
MODERATION_LATENCY = 0.15


async def turn_latencies(turns: int, moderation: FakeOpenAI | None) -> list[float]:
    from agent.conversation.routing import build_tutor
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata, TutorModels
    from agent.safety.guard import SafetyGuard
    from agent.safety.moderation import Moderator

    script = [say("Hi! What would you like to learn?")] + [say(ANSWER)] * turns
    model = ScriptedLLM(script, ttft=LLM_TTFT, chars_per_second=CHARS_PER_SECOND)
    # short audio (the first audio's time does not depend on it): more turns per minute
    voice = PacedTTS(ttfb=TTS_TTFB, seconds_per_char=0.02, speedup=4.0)
    userdata = SessionUserdata(tutor_models={"orchestrator": TutorModels(llm=model, tts=voice)})
    client = None
    if moderation is not None:
        client = openai.AsyncOpenAI(api_key=API_KEY, base_url=moderation.url, max_retries=0)
        userdata.safety = SafetyGuard(Moderator(client))
    playback = PlaybackLog()
    session = create_session(userdata)
    session.output.audio = RealtimeAudioOutput(playback)
    latencies: list[float] = []
    try:
        async with session:
            await session.start(build_tutor("orchestrator", userdata))
            await playback.played(1)
            for n in range(turns):
                started = time.monotonic()
                reply = session.run(user_input=f"What is seven times eight? ({n})")
                answer = (await playback.played(n + 2))[n + 1]
                latencies.append(answer.started - started)
                await reply
    finally:
        if client is not None:
            await client.close()
    return latencies


async def run(turns: int) -> list[list[object]]:
    async with FakeOpenAI(moderation_delay=MODERATION_LATENCY) as moderation:
        off = await turn_latencies(turns, None)
        on = await turn_latencies(turns, moderation)
        off_again = await turn_latencies(turns, None)  # the machine's drift, for comparison
    baseline = off + off_again
    rows: list[list[object]] = []
    for name, values in (("off", baseline), ("on (150 ms check)", on)):
        rows.append([name, len(values), percentile(values, 50), percentile(values, 95)])
    rows.append(
        [
            "added by moderation",
            "",
            percentile(on, 50) - percentile(baseline, 50),
            percentile(on, 95) - percentile(baseline, 95),
        ]
    )
    return rows


NOTES = """How to read it: the student's turn (text, so no VAD or end-of-turn wait) to the
first audio of the answer, p50 and p95 seconds; "off" runs before and after "on" and its
samples are pooled. With moderation on, the student's turn is checked while the model
thinks, and each sentence of the answer is synthesised while it is checked: its audio plays
only once cleared. The check (150 ms) is shorter than the model's first sentence plus the
TTS first byte, so it adds no wait in the common case. Target: added p95 <= 50 ms. A negative
figure is real: with moderation on, the gate releases a sentence as soon as its last word
arrives, while the framework's own sentence tokenizer (moderation off) waits for the next
word to be sure the sentence has ended."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench moderation", description=__doc__)
    parser.add_argument("--turns", type=int, default=20, help="turns per variant")
    parser.add_argument("--quick", action="store_true", help="CI size: 5 turns")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    turns = 5 if args.quick else args.turns
    if turns < 1:
        parser.error("--turns must be positive")
    rows = asyncio.run(run(turns))
    body = table(["moderation", "turns", "to first audio p50 s", "p95 s"], rows)
    report("Moderation: added turn latency", body, append=not args.no_append, notes=NOTES)
    return 0
