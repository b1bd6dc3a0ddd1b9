"""`python -m bench startup`: how long a new job's event loop stalls on its way to the
greeting, with the model clients built in the job (as before) or once per process (prewarm).

Each run is a fresh process forked from a forkserver with the worker's preloads (as a job
process is): the orchestrator's job body with the
production model wiring (`agent/workers/models.py`) against the wire-compatible OpenAI server,
under asyncio's debug mode, which reports every callback that holds the loop longer than
the threshold. Reported: the longest stall and the time from the job's start to the
greeting's first audio frame, per variant, median over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any

from harness.report import report, table

THRESHOLD = 0.05  # the bound: no stall over 50 ms
VARIANTS = ("models per job (before)", "models per process (prewarm)")


class _Stalls(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.longest = 0.0
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        # asyncio: "Executing <Handle ...> took 0.123 seconds"
        message = record.getMessage()
        if " took " in message and message.endswith(" seconds"):
            self.count += 1
            self.longest = max(self.longest, float(message.rsplit(" ", 2)[-2]))


def _one_run(per_process: bool, url: str, out: Any) -> None:
    import os

    os.environ.setdefault("LIVEKIT_URL", "ws://127.0.0.1:7880")
    os.environ.setdefault("LIVEKIT_API_KEY", "devkey")
    os.environ.setdefault("LIVEKIT_API_SECRET", "bench-secret-of-at-least-32-characters")
    from agent.config.roster import roster_for
    from agent.config.settings import load_settings
    from agent.dispatch.plan import DispatchPlan
    from agent.workers.job import JobModels, JobWiring, local_job
    from agent.workers.models import pipeline_tutor_models, session_stt
    from harness.fakes.audio import PlaybackLog, RealtimeAudioOutput
    from harness.fakes.openai_server import API_KEY

    settings = load_settings(openai_base_url=url, openai_api_key=API_KEY, records_url="")
    prebuilt = (pipeline_tutor_models(settings), session_stt(settings)) if per_process else None
    stalls = _Stalls()
    logging.getLogger("asyncio").addHandler(stalls)

    async def job() -> float:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = THRESHOLD
        started = time.monotonic()
        models, stt = prebuilt or (pipeline_tutor_models(settings), session_stt(settings))
        playback = PlaybackLog()
        own = models["orchestrator"]
        wiring = JobWiring(
            models=JobModels(models, {"stt": stt, "llm": own.llm, "tts": own.tts}),
            roster=roster_for(settings),
            prepare_session=lambda s: setattr(s.output, "audio", RealtimeAudioOutput(playback)),
        )
        async with local_job(settings, wiring, plan=DispatchPlan("b", "kid")):
            await playback.played(1)
            return playback.utterances[0].started - started

    greeting = asyncio.run(job(), debug=True)
    out.send((stalls.longest, stalls.count, greeting))
    out.close()


async def _serve(runs: int) -> dict[str, list[tuple[float, int, float]]]:
    from harness.fakes.llm import say
    from harness.fakes.openai_server import FakeOpenAI

    results: dict[str, list[tuple[float, int, float]]] = {v: [] for v in VARIANTS}
    from harness.measure import forkserver_context

    ctx = forkserver_context()  # what the worker's forkserver preloads, preloaded here too
    async with FakeOpenAI(chat=lambda call: say("Hi! What would you like to learn?")) as fake:
        for _ in range(runs):
            for per_process, variant in zip((False, True), VARIANTS, strict=True):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_one_run, args=(per_process, fake.url, child))
                proc.start()
                child.close()
                results[variant].append(await asyncio.to_thread(parent.recv))
                await asyncio.to_thread(proc.join, 60)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="job starts per variant")
    parser.add_argument("--quick", action="store_true", help="CI size: 1 run")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    results = asyncio.run(_serve(runs))
    rows = [
        [
            variant,
            len(samples),
            f"{statistics.median(s[0] for s in samples) * 1000:.0f}",
            f"{max(s[0] for s in samples) * 1000:.0f}",
            f"{statistics.median(s[1] for s in samples):.0f}",
            f"{statistics.median(s[2] for s in samples) * 1000:.0f}",
        ]
        for variant, samples in results.items()
    ]
    headers = ["variant", "runs", "longest stall median ms", "max ms",
               f"stalls > {THRESHOLD * 1000:.0f} ms", "job start to greeting audio ms"]  # fmt: skip
    notes = (
        "How to read it: asyncio debug mode reports every callback that held a job's event "
        f"loop over {THRESHOLD * 1000:.0f} ms between the job's start and the greeting's first "
        "audio (fake models answer at once; debug mode itself slows the loop a little). "
        "Before: the job built four LLM and four TTS clients and the STT (TLS contexts, "
        "plugin imports on first use). Now the worker's prewarm builds them once per job "
        "process, before a job is assigned to it."
    )
    report("Job start: event-loop stalls before the greeting", table(headers, rows),
           append=not args.no_append, notes=notes)  # fmt: skip
    return 0
