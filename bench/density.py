"""`python -m bench density`: what one live voice session costs, ours next to a bare one.

For each level N, N sessions talk at once, each in its own process forked from a forkserver
that preloads what the worker's forkserver preloads (the registered plugins and
`livekit.agents.ipc._preload`), so memory shared copy-on-write is shared here too. Each
process loads the Silero VAD once (the worker's `setup_fnc`), then runs one `AgentSession`:

- ours: `agent.conversation.session.create_session` with per-tutor models as the worker wires them,
  started with the orchestrator tutor (which greets the student);
- bare: a plain `AgentSession` and `Agent(instructions=...)` that greets via `generate_reply`;
- records: ours, recording every turn through a `RecordWriter` into one SQLite file that all
  sessions of the level share (as the workers share the records volume): records on vs off.

Both get the same fakes (non-streaming STT returning a fixed transcript, `ScriptedLLM`,
non-streaming silence TTS), the same VAD, the same default turn handling (the local
end-of-turn model), and the same simulated student: the recorded question at real-time
pace, 24 kHz 50 ms frames as RoomIO delivers them, waiting for each answer to play out on a
real-time sink. CPU is counted over the talk window only; memory (PSS) is read while every
session of the level is alive.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness import QUESTION_WAV as FIXTURE
from harness.measure import (
    cpu_seconds,
    forkserver_context,
    machine_busy_seconds,
    read_memory_kib,
)
from harness.report import percentile, report, table

if TYPE_CHECKING:
    from livekit.agents import Agent, AgentSession, stt, vad

    from harness.fakes.audio import PacedTTS
    from harness.fakes.llm import Reply, Request, ScriptedLLM

Variant = Literal["bare", "ours", "records"]
VARIANTS: tuple[Variant, ...] = ("bare", "ours", "records")

TRANSCRIPT = "What is seven times eight?"
GREETING = "Hi! What would you like to learn today?"
ANSWER = "Seven times eight is fifty-six."
BARE_INSTRUCTIONS = "You are a friendly tutor for students. Answer in one short sentence."
BARE_GREETING = "Greet the student in one short sentence and ask what they want to learn."

DEFAULT_LEVELS = (10, 20, 40)
DEFAULT_SECONDS = 20.0
QUICK_LEVELS = (2,)
QUICK_SECONDS = 15.0  # the greeting and an answered question (11 s with the stagger) + margin

# the worker's own warm-up, preloaded last in its forkserver (livekit.agents.worker)
# env that would switch the default turn detector or interruption model to the cloud
STAGGER_SECONDS = 4.0  # about half a question-and-answer cycle
CORES = os.cpu_count() or 1
SETUP_TIMEOUT = 300.0  # failure guards only: nothing waits for them to pass
CLOSE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Options:
    levels: tuple[int, ...]
    seconds: float
    frame_ms: int
    llm_ttft: float
    append: bool
    records_url: str = ""


@dataclass(frozen=True)
class SessionSpec:
    variant: Variant
    index: int
    seconds: float
    frame_ms: int
    llm_ttft: float
    first_pause: float  # spreads the students' turns: i / N of STAGGER_SECONDS
    records_url: str = ""


@dataclass
class SessionResult:
    variant: Variant
    index: int
    pid: int
    setup_cpu: float  # fork -> ready: imports, VAD load, models, session object
    start_cpu: float  # session.start (and the bare greeting request)
    talk_cpu: float  # user + sys over the talk window, every thread of the process
    talk_wall: float
    questions: int
    detected: int  # student turns the session committed to its history
    answered: int
    greeted: bool
    latencies: list[float]
    lateness: list[float]
    warnings: Counter[str]  # warning log messages (their templates), counted
    pss_kib: int = 0
    uss_kib: int = 0


@dataclass
class LevelResult:
    variant: Variant
    seconds: float  # of talk asked for
    setup_wall: float  # from the first fork to the last session ready
    machine_busy_share: float  # every process's CPU over all cores, "go" to last "done"
    sessions: list[SessionResult] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.sessions)

    def cpu_per_session_second(self) -> float:
        return sum(s.talk_cpu for s in self.sessions) / sum(s.talk_wall for s in self.sessions)

    def cpu_spread(self) -> float:
        """Standard deviation of the per-session figure across the level's sessions."""
        return statistics.pstdev(s.talk_cpu / s.talk_wall for s in self.sessions)

    def cpu_cell(self) -> str:
        return f"{self.cpu_per_session_second():.4f} ±{self.cpu_spread():.4f}"

    def pss_mib(self) -> float:
        return statistics.fmean(s.pss_kib for s in self.sessions) / 1024

    def uss_mib(self) -> float:
        return statistics.fmean(s.uss_kib for s in self.sessions) / 1024

    def wall_factor(self) -> float:
        """Wall time the talk took over the audio time it contained (1.0 = kept up)."""
        return statistics.fmean(s.talk_wall for s in self.sessions) / self.seconds

    def mean(self, attr: str) -> float:
        return statistics.fmean(getattr(s, attr) for s in self.sessions)

    def latencies(self) -> list[float]:
        return [x for s in self.sessions for x in s.latencies]

    def warnings(self) -> Counter[str]:
        return sum((s.warnings for s in self.sessions), Counter())

    def lateness(self) -> list[float]:
        return [x for s in self.sessions for x in s.lateness]

    def machine_busy(self) -> float:
        """CPU used by the sessions as a share of all cores during the talk."""
        wall = statistics.fmean(s.talk_wall for s in self.sessions)
        return sum(s.talk_cpu for s in self.sessions) / (wall * CORES)


# ------------------------------------------------------------------------ session process


class WarningCounter(logging.Handler):
    """Counts warnings by message template; only errors are printed."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg)] += 1


async def _nothing() -> None:
    return None


@dataclass
class BuiltSession:
    session: AgentSession[Any]
    agent: Agent
    after_start: Callable[[AgentSession[Any]], None] = lambda _: None
    after_close: Callable[[], Awaitable[None]] = _nothing


def tutor_reply(request: Request) -> Reply:
    """The script of every fake LLM: greet first, then answer the question."""
    from harness.fakes.llm import say

    return say(ANSWER if request.texts("user") else GREETING)


def _models(spec: SessionSpec, name: str) -> tuple[ScriptedLLM, PacedTTS]:
    from harness.fakes.audio import PacedTTS
    from harness.fakes.llm import ScriptedLLM

    # 15 characters of speech a second, synthesised 4x faster than real time
    voice = PacedTTS(ttfb=0.15, seconds_per_char=1 / 15, speedup=4.0, name=name)
    return ScriptedLLM(tutor_reply, name=name, ttft=spec.llm_ttft), voice


def build_bare(spec: SessionSpec, vad: vad.VAD, stt: stt.STT) -> BuiltSession:
    from livekit.agents import Agent, AgentSession

    llm, tts = _models(spec, "bare")

    def greet(started: AgentSession[Any]) -> None:
        started.generate_reply(instructions=BARE_GREETING)

    return BuiltSession(
        session=AgentSession(stt=stt, vad=vad, llm=llm, tts=tts),
        agent=Agent(instructions=BARE_INSTRUCTIONS),
        after_start=greet,
    )


def build_ours(spec: SessionSpec, vad: vad.VAD, stt: stt.STT) -> BuiltSession:
    # the modules a job of the orchestrator worker loads (runner and model wiring included)
    import agent.workers.job  # noqa: F401
    from agent.config.roster import default_roster
    from agent.conversation.routing import build_tutor
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata, TutorModels

    tutor_models = {}
    for kind in default_roster().tutors:
        llm, tts = _models(spec, kind)
        tutor_models[kind] = TutorModels(llm=llm, tts=tts)
    userdata = SessionUserdata(
        student_identity=f"student-{spec.index}",
        room_name=f"bench-{spec.index}",
        tutor_models=tutor_models,
    )
    orchestrator = tutor_models["orchestrator"]
    session = create_session(userdata, stt=stt, vad=vad, llm=orchestrator.llm, tts=orchestrator.tts)
    return BuiltSession(session=session, agent=build_tutor("orchestrator", userdata))


def build_records(spec: SessionSpec, vad: vad.VAD, stt: stt.STT) -> BuiltSession:
    """Ours, with the job's records: a writer on the process's store, a session recorder."""
    from agent.records import RecordsStore, RecordWriter
    from agent.records.recorder import SessionRecorder

    built = build_ours(spec, vad, stt)
    store = RecordsStore(spec.records_url)  # the worker's prewarm: once per process
    writer = RecordWriter(store)
    userdata = built.session.userdata
    userdata.session_id = f"bench-{os.getpid()}-{spec.index}"
    userdata.recorder = SessionRecorder(writer, userdata, worker="learning-orchestrator")
    userdata.recorder.attach(built.session)

    async def flush() -> None:  # the job's shutdown callback
        await writer.aclose()
        await store.aclose()
        if writer.dropped:
            raise RuntimeError(f"{writer.dropped} record(s) were not written")

    built.after_close = flush
    return built


BUILDERS = {"bare": build_bare, "ours": build_ours, "records": build_records}


def session_process(spec: SessionSpec, conn: Connection) -> None:
    """Entry point of one session process."""
    printed = logging.StreamHandler()
    printed.setLevel(logging.ERROR)
    printed.setFormatter(logging.Formatter(f"[{spec.variant}-{spec.index}] %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[printed])
    try:
        asyncio.run(_run_session(spec, conn))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


async def _run_session(spec: SessionSpec, conn: Connection) -> None:
    from livekit.plugins import silero

    from harness.sim_audio import FixedTranscriptSTT, RealtimeSink, SimStudent, load_clip

    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    vad = silero.VAD.load()  # the worker's setup_fnc, once per process
    sink = RealtimeSink()
    clip = load_clip(FIXTURE, sample_rate=24000)
    student = SimStudent(
        clip,
        sink,
        talk_seconds=spec.seconds,
        frame_ms=spec.frame_ms,
        first_pause=spec.first_pause,
    )
    built = BUILDERS[spec.variant](spec, vad, FixedTranscriptSTT(TRANSCRIPT))
    session = built.session
    session.input.audio = student
    session.output.audio = sink
    setup_cpu = cpu_seconds()
    conn.send(("ready", None))
    await asyncio.to_thread(conn.recv)  # "go": every session of the level is ready

    cpu0 = cpu_seconds()
    await session.start(built.agent)
    built.after_start(session)
    student.begin()
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    await student.talk_done.wait()
    cpu2, wall2 = cpu_seconds(), time.monotonic()

    stats = student.stats
    detected = sum(
        1 for item in session.history.items if item.type == "message" and item.role == "user"
    )
    result = SessionResult(
        variant=spec.variant,
        index=spec.index,
        pid=os.getpid(),
        setup_cpu=setup_cpu,
        start_cpu=cpu1 - cpu0,
        talk_cpu=cpu2 - cpu1,
        talk_wall=wall2 - wall1,
        questions=stats.questions,
        detected=detected,
        answered=stats.answered,
        greeted=stats.greeted,
        latencies=stats.answer_latencies,
        lateness=stats.frame_lateness,
        warnings=warnings.counts,
    )
    conn.send(("done", result))
    await asyncio.to_thread(conn.recv)  # "close": memory has been read
    # closing mid-turn warns that the pending student turn is skipped: expected, not counted
    logging.getLogger().removeHandler(warnings)
    await session.aclose()
    await built.after_close()
    await sink.aclose()


# ---------------------------------------------------------------------------- the parent


def _collect(conns: Sequence[Connection], expected: str, timeout: float) -> list[Any]:
    """One `expected` message from each connection, in order; fails on an error or EOF."""
    received: dict[Connection, Any] = {}
    deadline = time.monotonic() + timeout
    while len(received) < len(conns):
        pending = [c for c in conns if c not in received]
        ready = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"{len(pending)} session(s) never reported {expected!r}")
        for conn in ready:
            assert isinstance(conn, Connection)
            try:
                kind, payload = conn.recv()
            except EOFError:
                raise RuntimeError("a session process died without a report") from None
            if kind == "error":
                raise RuntimeError(f"a session process failed:\n{payload}")
            received[conn] = payload
    return [received[c] for c in conns]


def run_level(ctx: Any, variant: Variant, n: int, opts: Options) -> LevelResult:
    conns: list[Connection] = []
    procs: list[Any] = []
    started = time.monotonic()
    try:
        for i in range(n):
            spec = SessionSpec(
                variant,
                i,
                opts.seconds,
                opts.frame_ms,
                opts.llm_ttft,
                STAGGER_SECONDS * i / n,
                records_url=opts.records_url,
            )
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=session_process, args=(spec, child_end), name=f"{variant}-{i}"
            )
            proc.start()
            child_end.close()
            conns.append(parent_end)
            procs.append(proc)
        _collect(conns, "ready", SETUP_TIMEOUT)
        setup_wall = time.monotonic() - started
        for conn in conns:
            conn.send("go")
        busy0, wall0 = machine_busy_seconds(), time.monotonic()
        results: list[SessionResult] = _collect(conns, "done", SETUP_TIMEOUT + opts.seconds * 4)
        busy = (machine_busy_seconds() - busy0) / ((time.monotonic() - wall0) * CORES)
        for result in results:  # every session is alive and listening here
            result.pss_kib, result.uss_kib = read_memory_kib(result.pid)
        for conn in conns:
            conn.send("close")
        for proc in procs:
            proc.join(CLOSE_TIMEOUT)
        return LevelResult(variant, opts.seconds, setup_wall, busy, results)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()


# ---------------------------------------------------------------------------- reporting


def _ratio(ours: float, bare: float) -> str:
    return f"{ours / bare:.2f}x" if bare else "n/a"


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


Level = dict[Variant, LevelResult]  # one concurrency level, every variant


def cost_table(levels: Sequence[Level]) -> str:
    rows = []
    for level in levels:
        bare, ours, records = (level[v] for v in VARIANTS)
        rows.append(
            (
                bare.n,
                bare.cpu_cell(),
                ours.cpu_cell(),
                records.cpu_cell(),
                _ratio(ours.cpu_per_session_second(), bare.cpu_per_session_second()),
                _ratio(records.cpu_per_session_second(), ours.cpu_per_session_second()),
                f"{bare.pss_mib():.1f}",
                f"{ours.pss_mib():.1f}",
                f"{records.pss_mib():.1f}",
                _ratio(ours.pss_mib(), bare.pss_mib()),
                _ratio(records.pss_mib(), ours.pss_mib()),
            )
        )
    headers = (
        "sessions",
        "bare CPU core-s/session-s",
        "ours CPU",
        "ours + records CPU",
        "CPU ours/bare",
        "CPU records on/off",
        "bare PSS MiB/session",
        "ours PSS",
        "ours + records PSS",
        "PSS ours/bare",
        "PSS records on/off",
    )
    return table(headers, rows)


def load_table(levels: Sequence[Level]) -> str:
    rows = []
    for variants in levels:
        for level in variants.values():
            lateness = level.lateness()
            rows.append(
                (
                    level.n,
                    level.variant,
                    f"{level.mean('questions'):.1f}",
                    f"{level.mean('detected'):.1f}",
                    f"{level.mean('answered'):.1f}",
                    min(s.detected for s in level.sessions),
                    f"{_ms(level.latencies(), 50)} / {_ms(level.latencies(), 95)}",
                    f"{_ms(lateness, 95)} / {max(lateness, default=0) * 1000:.0f}",
                    f"{level.machine_busy() * 100:.0f}% / {level.machine_busy_share * 100:.0f}%",
                    f"{level.wall_factor():.3f}",
                    f"{level.uss_mib():.1f}",
                    f"{level.mean('setup_cpu'):.2f} / {level.mean('start_cpu'):.2f}",
                    level.warnings().total(),
                )
            )
    headers = (
        "sessions",
        "variant",
        "asked/session",
        "detected/session",
        "answered/session",
        "min detected",
        "answer latency p50 / p95 ms",
        "input frame lateness p95 / max ms",
        "CPU busy: sessions / whole machine",
        "talk wall / audio",
        "private (USS) MiB/session",
        "setup / start CPU s/session",
        "warnings",
    )
    return table(headers, rows)


NOTES = """How to read it: each level runs N bare sessions, then N of ours, then N of ours with
records on (every turn queued and written to one SQLite file in WAL mode that the level's
sessions share, as the workers share the records volume), every session in its own process
(as the worker runs jobs: forked from a forkserver with the worker's preloads, the Silero
VAD loaded once per process). Students start their first question up to 4 s apart. *CPU
core-s/session-s*: user+sys CPU of the session processes over the talk window over
sessions x wall seconds of talk (± the spread between sessions); 0.04 means one core
carries about 25 sessions if nothing else runs. Run-to-run noise on this shared machine is
about ±10%, so ratios within 0.9-1.1x mean "no measurable difference". *PSS MiB/session*:
mean proportional set size while all N sessions are alive; pages shared with the
forkserver (libraries, models, preloaded modules) are split among the processes, so it
falls as N grows towards the private (USS) part, which is what each further session adds.
Second table: the sanity check and the load. Asked/detected/answered are student
questions, student turns the session committed (the VAD and STT really worked) and answers
that started playing; latency is from the end of the student's speech to the first answer
audio, and with the framework's default turn handling it is mostly the endpointing wait:
the end-of-turn model is not confident on this clip, so each turn waits the maximum delay
(2.5 s) after the VAD's silence (0.55 s) before STT 0.2 s, LLM 0.3 s and TTS 0.15 s can
even start to matter (see `bench turns`); lateness is how late the pipeline pulled
microphone frames. *Whole machine* counts every process, including other work on the
machine. When a level cannot keep up, lateness, latency and warnings grow and fewer
questions are answered: read its cost figures as the cost under overload. Not measured:
WebRTC (Opus decode/encode, the room's FFI media path), the worker's main process, real
model clients (HTTP, MP3 decoding of OpenAI TTS audio)."""


def print_progress(level: LevelResult) -> None:
    print(
        f"  {level.variant:>7} x{level.n}: {level.cpu_per_session_second():.4f} core-s/s, "
        f"{level.pss_mib():.1f} MiB PSS, greeted {sum(s.greeted for s in level.sessions)}"
        f"/{level.n}, answered {level.mean('answered'):.1f}/session, "
        f"set up in {level.setup_wall:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def warnings_note(levels: Sequence[Level]) -> str:
    lines = [
        f'- {level.variant} x{level.n}: {count} x "{message}"'
        for variants in levels
        for level in variants.values()
        for message, count in level.warnings().most_common(3)
    ]
    return "Warnings the sessions logged (most frequent):\n" + "\n".join(lines) if lines else ""


def sanity_failures(levels: Sequence[Level]) -> list[str]:
    return [
        f"{level.variant} x{level.n}: a session detected no student turn"
        for variants in levels
        for level in variants.values()
        if min(s.detected for s in level.sessions) == 0
    ]


# ---------------------------------------------------------------------------- entry point


def parse_options(argv: list[str], *, records_dir: Path) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench density", description=__doc__)
    parser.add_argument(
        "--sessions",
        default=",".join(map(str, DEFAULT_LEVELS)),
        help="comma-separated concurrency levels (default %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="seconds of simulated talk per session (default %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI size: {QUICK_LEVELS[0]} sessions, {QUICK_SECONDS:g} s of talk",
    )
    parser.add_argument("--frame-ms", type=int, default=50, help="microphone frame size")
    parser.add_argument("--llm-ttft", type=float, default=0.3, help="fake LLM first token, s")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        levels = QUICK_LEVELS if args.quick else tuple(int(x) for x in args.sessions.split(","))
    except ValueError:
        parser.error("--sessions takes comma-separated integers, e.g. 10,20,40")
    if min(levels) < 1 or args.seconds <= 0:
        parser.error("--sessions and --seconds must be positive")
    return Options(
        levels=levels,
        seconds=QUICK_SECONDS if args.quick else args.seconds,
        frame_ms=args.frame_ms,
        llm_ttft=args.llm_ttft,
        append=not args.no_append,
        records_url=f"sqlite+aiosqlite:///{records_dir / 'tutor.db'}",
    )


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-records-") as records_dir:
        opts = parse_options(argv, records_dir=Path(records_dir))
        return run(opts)


def prepare_records(url: str) -> None:
    """Migrate the level's records file first, as a deployed database already is."""
    from agent.records import RecordsStore

    async def migrate() -> None:
        store = RecordsStore(url)
        try:
            await store.ensure_schema()
        finally:
            await store.aclose()

    asyncio.run(migrate())


def run(opts: Options) -> int:
    prepare_records(opts.records_url)
    ctx = forkserver_context()
    levels: list[Level] = []
    for n in opts.levels:
        print(f"density: {n} sessions x {opts.seconds:g} s ...", file=sys.stderr, flush=True)
        level = {variant: run_level(ctx, variant, n, opts) for variant in VARIANTS}
        levels.append(level)
        for result in level.values():
            print_progress(result)
    body = f"{cost_table(levels)}\n\n{load_table(levels)}"
    report(
        f"Per-session cost (density), {opts.seconds:g} s of talk",
        body,
        append=opts.append,
        notes="\n\n".join(filter(None, [NOTES, warnings_note(levels)])),
    )
    failures = sanity_failures(levels)
    for failure in failures:
        print(f"density: {failure}", file=sys.stderr)
    return 1 if failures else 0
