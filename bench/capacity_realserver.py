"""`python -m bench capacity --real-server`: how many students at once one worker core
serves on the real LiveKit server, as the students hear it.

Inside `../shared/livekit-server/in-netns.sh`: the server, the wire-compatible model fake
(LLM first token 0.4 s, speech first byte 0.3 s) and N `rtc` students on one core (this
process and all it starts but the worker); the orchestrator worker as compose starts it,
pinned with `taskset` to the other core, its job processes with it. Per level, a fresh
worker admitting every student (`WORKER_CAPACITY`), the N students join at the same moment,
hear the greeting, wait for quiet, ask seven times eight (espeak-ng, in real time) and wait
for the answer. Per level: the greeting (join → first tutor audio) and end of speech → first
audio, p50 and max; how many heard their answer; silences inside a tutor's speech beyond
what one student hears (a gap: longer than `GAP` s), the longest; the worker's log lines
(ERROR, WARNING, the commonest warnings) and how busy its core was.

It reports the largest N whose greeting and first audio p50 stay within 10% of one
student's (one student alone, run three times: the median), with no extra gap and every
answer heard. `--overload` then runs twice that many students at a worker with its own
default capacity: each either has a tutor (within the one-student figures) or none came (the
server was told the worker is full; the student's page says every tutor is busy): no room
where a tutor came and went silent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.settings import LiveKitSettings
from agent.dispatch.token import student_token
from harness import realserver
from harness.fakes.production import FIFTY_SIX, GREETING, SEVEN_EIGHTS
from harness.measure import busy_share, core_ticks
from harness.report import percentile, report, table
from harness.student import HEARD_FRAME, Student, join

DEFAULT_LEVELS = (1, 4, 6, 8, 10, 12)
QUICK_LEVELS = (1, 2)
SINGLE_RUNS = 3  # one student alone, this many times: the baseline is their median
TOLERANCE = 0.10  # within 10% of one student's figures
GAP = 0.3  # a silence inside one tutor utterance longer than this is a gap
QUIET = 1.5  # a tutor quiet this long has finished its utterance
NO_TUTOR = 20.0  # a student with no tutor audio by then has no tutor (the page's busy wait)
WARNING = re.compile(r'"level":\s*"WARNING"|\bWARNING\b')
ERROR = re.compile(r'"level":\s*"(ERROR|CRITICAL)"|\b(ERROR|CRITICAL)\b')
READY = re.compile(r"process initialized|job runner initialized")
MESSAGE = re.compile(r'"message":\s*"([^"]{0,80})')


@dataclass
class Seat:
    """What one student heard."""

    greeting: float | None = None  # join → first tutor audio; None: no tutor came
    first_audio: float | None = None  # end of the question → first tutor audio
    answered: bool = False
    gaps: list[float] = field(default_factory=list)  # silences inside one tutor utterance
    problem: str = ""


@dataclass
class Level:
    students: int
    capacity: int
    seats: list[Seat]
    core_busy: float
    others_busy: float  # the other cores: the server, the model fake, the students
    errors: int
    warnings: Counter[str]
    runs: int = 1  # the same class size run this many times (one student: the baseline)

    def greetings(self) -> list[float]:
        return [s.greeting for s in self.seats if s.greeting is not None]

    def first_audio(self) -> list[float]:
        return [s.first_audio for s in self.seats if s.first_audio is not None]

    @property
    def answered(self) -> int:
        return sum(s.answered for s in self.seats)

    @property
    def tutored(self) -> int:
        return sum(s.greeting is not None for s in self.seats)

    @property
    def silent(self) -> int:
        """Rooms where a tutor came but the answer never did."""
        return sum(s.greeting is not None and not s.answered for s in self.seats)

    def gaps(self) -> list[float]:
        return [g for s in self.seats for g in s.gaps]


def utterance_gaps(loud: list[float], start: float, end: float) -> list[float]:
    """Silences longer than GAP between consecutive loud frames heard in [start, end)."""
    times = [t for t in loud if start <= t < end]
    silences = (b - a - HEARD_FRAME for a, b in itertools.pairwise(times))
    return [silence for silence in silences if silence > GAP]


def tutor_loud(student: Student) -> list[float]:
    return sorted(t for times in student.loud.values() for t in times)


async def one_student(
    url: str, settings: LiveKitSettings, question: Path, go: asyncio.Event
) -> Seat:
    seat = Seat()
    room = f"class-{secrets.token_hex(4)}"
    identity = f"student-{secrets.token_hex(2)}"
    token = student_token(settings, room=room, identity=identity)
    await go.wait()
    joined_at = time.monotonic()
    student = await join(url, token, identity)
    try:
        try:
            await student.wait_for(lambda: tutor_loud(student), NO_TUTOR, "a tutor")
        except AssertionError:
            return seat  # no tutor came: the worker was full
        first = tutor_loud(student)[0]
        seat.greeting = first - joined_at
        await student.wait_for_caption(GREETING, realserver.TURN)
        await student.wait_for(lambda: student.quiet_since(QUIET), realserver.TURN, "quiet")
        asked_at = time.monotonic()
        seat.gaps += utterance_gaps(tutor_loud(student), first, asked_at)
        spoke_until = await student.say(question)
        await student.wait_for_caption(FIFTY_SIX, realserver.TURN)
        seat.answered = True
        heard = [t for t in tutor_loud(student) if t > spoke_until]
        if heard:
            seat.first_audio = heard[0] - spoke_until
        await student.wait_for(lambda: student.quiet_since(QUIET), realserver.TURN, "quiet")
        seat.gaps += utterance_gaps(tutor_loud(student), spoke_until, time.monotonic())
    except AssertionError as exc:
        seat.problem = str(exc).splitlines()[0]
    finally:
        await student.leave()
    return seat


def log_counts(text: str) -> tuple[int, Counter[str]]:
    errors, warnings = 0, Counter[str]()
    for line in text.splitlines():
        if any(noise in line for noise in realserver.SDK_NOISE):
            continue
        if ERROR.search(line):
            errors += 1
        elif WARNING.search(line):
            found = MESSAGE.search(line)
            warnings[(found.group(1) if found else line[-80:]).strip()] += 1
    return errors, warnings


async def run_level(
    n: int, capacity: int | None, env: dict[str, str], run_dir: Path, url: str, question: Path
) -> Level:
    """N students at once at a fresh worker pinned to core 0."""
    worker_env = env | ({"WORKER_CAPACITY": str(capacity)} if capacity else {})
    name = f"orchestrator-{n}-{secrets.token_hex(2)}"
    worker = await realserver.start_worker(
        "learning-orchestrator", worker_env, run_dir, name=name, cpus="0"
    )
    admitted = capacity or default_capacity()
    settings = realserver.stack_settings(url)
    try:
        await wait_for_warm_pool(worker, int(worker_env.get("NUM_IDLE_PROCESSES") or admitted))
        before = core_ticks(0)
        others = sorted(os.sched_getaffinity(0))  # this process runs on every core but 0
        others_before = [core_ticks(core) for core in others]
        go = asyncio.Event()
        tasks = [asyncio.create_task(one_student(url, settings, question, go)) for _ in range(n)]
        await asyncio.sleep(0)  # every student waits on the same moment
        go.set()
        seats = await asyncio.gather(*tasks)
        busy = busy_share(before, core_ticks(0))
        others_busy = statistics.fmean(
            busy_share(was, core_ticks(core))
            for core, was in zip(others, others_before, strict=True)
        )
    finally:
        await worker.stop()
    errors, warnings = log_counts(worker.text())
    return Level(n, admitted, list(seats), busy, others_busy, errors, warnings)


def default_capacity() -> int:
    """What a worker pinned to one core admits by default (`WORKER_SESSIONS_PER_CORE`)."""
    from agent.config.settings import Settings

    return int(Settings.model_fields["worker_sessions_per_core"].default)


async def wait_for_warm_pool(worker: realserver.Process, processes: int) -> None:
    """Until the worker's warm job processes (or threads, `JOB_EXECUTOR=thread`) are ready
    (each logs its prewarm), so that a level measures serving, not the worker's own start."""
    deadline = time.monotonic() + 120
    while len(READY.findall(worker.text())) < processes:
        if time.monotonic() > deadline:
            break  # measured anyway: the table says how the greeting suffered
        await asyncio.sleep(0.2)


def within(level: Level, single: Level) -> list[str]:
    """Why `level` is not as good as one student (empty: it is)."""
    why = []
    base_greeting = percentile(single.greetings(), 50)
    base_first = percentile(single.first_audio(), 50)
    if level.answered < len(level.seats):
        why.append(f"{level.answered}/{len(level.seats)} answered")
    if not level.greetings() or percentile(level.greetings(), 50) > base_greeting * (1 + TOLERANCE):
        why.append("greeting")
    if not level.first_audio() or percentile(level.first_audio(), 50) > base_first * (
        1 + TOLERANCE
    ):
        why.append("first audio")
    base_gaps = len(single.gaps()) / max(1, len(single.seats))
    if len(level.gaps()) > base_gaps * len(level.seats):
        why.append("extra gaps")
    return why


def fmt(values: list[float], q: float = 50) -> str:
    if not values:
        return "—"
    return f"{max(values) if q == 100 else percentile(values, q):.2f}"


def level_rows(levels: list[Level], single: Level) -> list[list[object]]:
    base_gaps = len(single.gaps()) / max(1, len(single.seats))
    rows: list[list[object]] = []
    for level in levels:
        extra = max(0, round(len(level.gaps()) - base_gaps * len(level.seats)))
        warnings = sum(level.warnings.values())
        top = "; ".join(f"{count} x {text}" for text, count in level.warnings.most_common(2))
        refused = len(level.seats) - level.tutored
        rows.append(
            [
                f"{level.students}" + (f" ({level.runs} runs)" if level.runs > 1 else ""),
                f"{fmt(level.greetings())} / {fmt(level.greetings(), 100)}",
                f"{fmt(level.first_audio())} / {fmt(level.first_audio(), 100)}",
                f"{level.answered}/{len(level.seats)}"
                + (f", {refused} no tutor" if refused else ""),
                f"{extra} ({max(level.gaps(), default=0.0):.2f} s)",
                f"{level.core_busy:.0%}",
                f"{level.others_busy:.0%}",
                f"{level.errors} ERROR, {warnings} warnings" + (f" ({top})" if top else ""),
                ", ".join(within(level, single)) or "✓",
            ]
        )
    return rows


HEADERS = [
    "students at once",
    "greeting p50 / max s",
    "end of speech → first audio p50 / max s",
    "answered",
    "extra gaps (longest silence)",
    "worker core busy",
    "other cores busy",
    "worker log",
    "vs one student",
]


def combined(runs: list[Level]) -> Level:
    """One class size run several times, as one level (every seat, the mean busy shares)."""
    first = runs[0]
    return Level(
        first.students,
        first.capacity,
        [seat for level in runs for seat in level.seats],
        statistics.fmean(level.core_busy for level in runs),
        statistics.fmean(level.others_busy for level in runs),
        sum(level.errors for level in runs),
        sum((level.warnings for level in runs), Counter[str]()),
        runs=len(runs),
    )


async def run(
    levels: tuple[int, ...],
    overload: bool,
    run_dir: Path,
    overrides: dict[str, str],
    single_runs: int = SINGLE_RUNS,
) -> tuple[list[Level], Level | None, dict[str, float]]:
    server = await realserver.start_livekit(run_dir)
    models = realserver.ModelFake()
    models.questions.default = SEVEN_EIGHTS  # a class asking the same
    models.start()
    env = realserver.stack_env(server, models, run_dir) | {"NUM_IDLE_PROCESSES": "0"} | overrides
    speech = run_dir / "speech"
    speech.mkdir(exist_ok=True)
    question = realserver.espeak_wav(SEVEN_EIGHTS, speech)
    results: list[Level] = []
    busy: Level | None = None
    try:
        floor = await connect_floor(server.url)
        for n in levels:
            # the baseline every level is held to: one student's figures, from several runs
            runs = single_runs if n == 1 else 1
            level = combined(
                [await run_level(n, n, env, run_dir, server.url, question) for _ in range(runs)]
            )
            results.append(level)
            print(level_rows([level], results[0])[0], file=sys.stderr)
        if overload:
            twice = 2 * default_capacity()
            busy = await run_level(twice, None, env, run_dir, server.url, question)
            print(level_rows([busy], results[0])[0], file=sys.stderr)
    finally:
        models.stop()
        await server.process.stop()
    return results, busy, floor


async def connect_floor(url: str) -> dict[str, float]:
    """`bench.connect_cost` on the worker's core while nothing else runs there."""
    child = await asyncio.create_subprocess_exec(
        "taskset",
        "-c",
        "0",
        sys.executable,
        "-m",
        "bench.connect_cost",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(child.communicate(), timeout=120)
    if child.returncode:
        raise RuntimeError(f"bench.connect_cost exited {child.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


def summary(levels: list[Level], busy: Level | None, floor: dict[str, float]) -> str:
    single = levels[0]
    held = max((lv.students for lv in levels if not within(lv, single)), default=0)
    body = (
        f"Largest class within 10% of one student's figures: **{held} students** on one "
        "worker core.\n\n"
    )
    body += floor_sentence(floor, max(lv.students for lv in levels), single) + "\n\n"
    body += table(HEADERS, level_rows(levels, single))
    if busy is not None:
        body += (
            f"\n\nTwice capacity, default settings ({busy.capacity} admitted by the worker, "
            f"{busy.students} students at once): {busy.tutored} had a tutor, "
            f"{busy.students - busy.tutored} had none (told every tutor is busy), "
            f"{busy.silent} silent rooms, {busy.answered} answered; of those with a tutor: "
            f"greeting p50 {fmt(busy.greetings())} s, "
            f"first audio p50 {fmt(busy.first_audio())} s.\n\n"
        )
        body += table(HEADERS, level_rows([busy], single))
    problems = Counter(s.problem for lv in [*levels, *([busy] if busy else [])] for s in lv.seats)
    problems.pop("", None)
    if problems:
        body += "\n\nWhat a student missed:"
        body += "".join(f"\n- {n} x {text[:160]}" for text, n in problems.most_common(5))
    return body


def floor_sentence(floor: dict[str, float], n: int, single: Level) -> str:
    """The SDK's own cost of N tutors joining on one core, against the greeting's margin: the
    middle student's tutor is in its room after at least N/2 joins, one more than a lone
    student's wait for every join past the first."""
    greeting = statistics.median(single.greetings()) if single.greetings() else 0.0
    more = max(0, n // 2 - 1)
    return (
        f"The SDK's floor (`bench.connect_cost`, no product code): one `rtc.Room` connect and "
        f"audio publish took {1000 * floor['first']:.0f} ms of CPU in a fresh process (a job "
        f"in a process of its own) and {1000 * floor['warm']:.0f} ms with the runtime warm "
        f"(a job in a thread). With {n} tutors joining at once on one core, the middle "
        f"student's tutor waits for {more} joins more than a lone student's: "
        f"{more * floor['first']:.2f} s / {more * floor['warm']:.2f} s before any session "
        f"starts, against a margin of {TOLERANCE * greeting:.2f} s (10% of one student's "
        "greeting)."
    )


NOTES = """How to read it: a real LiveKit server (v1.9.12) in its network namespace; the
orchestrator worker started as compose starts it (`python -m livekit.agents start`) under
`taskset -c 0`, so it and its job processes share core 0; the server, the model fake and
the students on core 1. One student alone is run three times (the median of the three is
the baseline). Each level starts a fresh worker admitting that many students
(`WORKER_CAPACITY`), waits for its warm processes, then every student joins at the same
moment, hears the greeting, and once the tutor is quiet asks seven times eight
(espeak-ng at real time) and hears the answer (the orchestrator hands over to Math, which
answers). Gaps: silences over {gap} s inside one tutor utterance as a student heard it,
counted beyond the one-student level's count per student. Worker core busy: core 0's share
of busy time over the level, as /proc/stat counts it; other cores busy: the same for the
cores of the server, the model fake and the students (near 100%, the students' own side was
slowed too)."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench capacity --real-server", description=__doc__
    )
    parser.add_argument("--real-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--students",
        default=",".join(map(str, DEFAULT_LEVELS)),
        help="comma-separated class sizes (default %(default)s; 1 is added)",
    )
    parser.add_argument("--quick", action="store_true", help=f"CI size: {QUICK_LEVELS}")
    parser.add_argument(
        "--overload", action="store_true", help="also twice the default capacity, default settings"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting for every level (e.g. VAD_ENGINE=native); repeatable",
    )
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
    if len(overrides) != len(args.set):
        parser.error("--set takes NAME=VALUE")
    try:
        levels = QUICK_LEVELS if args.quick else tuple(int(x) for x in args.students.split(","))
    except ValueError:
        parser.error("--students takes comma-separated integers, e.g. 1,4,10")
    levels = tuple(sorted({1, *levels}))
    if problem := realserver.realserver_problem():
        print(f"bench capacity --real-server: {problem}", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or 0 not in cpus:
        print("bench capacity --real-server: needs cores 0 and another", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, set(cpus) - {0})  # this process and all it starts, but the worker
    with realserver.run_directory() as run_dir:
        print(f"logs: {run_dir}", file=sys.stderr)
        single_runs = 1 if args.quick else SINGLE_RUNS
        results, busy, floor = asyncio.run(
            run(levels, args.overload, run_dir, overrides, single_runs)
        )
    settings = ", ".join(args.set) or "the shipped defaults"
    report(
        f"Capacity on the real server: students at once on one worker core ({settings})",
        summary(results, busy, floor),
        append=not args.no_append,
        notes=NOTES.format(gap=GAP),
    )
    return 0
