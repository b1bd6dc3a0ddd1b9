"""`python -m bench capacity`: how many live sessions one worker core holds in real time.

Sessions run as the orchestrator worker runs them: in job processes of the framework's own
process pool (`livekit.agents.ipc.proc_pool.ProcPool`, process executors), forked from a
forkserver preloading what the worker's forkserver preloads, each process prepared by the
worker's own `prewarm` (`agent/workers/orchestrator.py`: real Silero VAD, the production
model clients, the records store, the moderation client) and then given one job. The job
runs the orchestrator's job body (`run_tutor_job` with the session models the worker's
entrypoint passes: its STT, VAD, LLM, TTS and turn handling, so the framework's local
end-of-turn model) with no room: a simulated student speaks a recorded question at
real-time pace into the session and listens on a real-time sink (`bench/sim_audio.py`). The
model clients talk HTTP to the wire-compatible OpenAI server (`harness/fakes/openai_server`)
in the benchmark's own process.

Cores: the job processes are pinned to one core (the last one this process may use), the
benchmark process (the process pool's supervision, the model server, the records' SQLite
file is written by the jobs) to the others. The level steps up the number of concurrent
sessions on that one core until real time breaks (see `breaks`), so the figure is sessions
per worker core. It cannot see WebRTC (Opus, the rtc SDK's media threads): students per
core with WebRTC are estimated by adding the ~4.6% of a core per session measured on a real
server (issue #16).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import QUESTION_WAV as FIXTURE
from harness.measure import (
    CLOUD_ENV,
    WarningCounter,
    busy_share,
    core_ticks,
    cpu_seconds,
    forkserver_context,
    pin_process,
    read_memory_kib,
)
from harness.report import percentile, report, table

if TYPE_CHECKING:
    from livekit.agents import JobContext, JobProcess

SOCKET_ENV = "BENCH_CAPACITY_SOCKET"  # where a job reports (a Unix socket of this process)
CORE_ENV = "BENCH_CAPACITY_CORE"  # the core job processes pin themselves to ("" = none)

WEBRTC_CORE_PER_SESSION = 0.046  # measured on a real LiveKit server (issue #16)
LATENCY_TOLERANCE = 0.10  # p95 more than 10% above the single session's: broken
GAP_TOLERANCE = 0.02  # a silence inside the tutor's audio longer than this is a gap
VAD_SLOW = "VAD inference is slower than realtime"
DEFAULT_LEVELS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32)
DEFAULT_SECONDS = 30.0
BASELINE_FACTOR = 2.0  # the single session (the baseline) talks twice as long
QUICK_LEVELS = (1, 2)
QUICK_SECONDS = 15.0  # the greeting and one answered question, with the stagger
STAGGER_SECONDS = 4.0  # students' first questions spread over this (as in bench density)
LLM_TTFT, TTS_TTFB, MODERATION_DELAY = 0.3, 0.15, 0.15
ANSWER_TIMEOUT = 8.0  # the simulated student asks again after this (SimStudent's default)
LEVEL_TIMEOUT = 300.0  # failure guard only: nothing waits for it to pass
LOAD_SAMPLE_INTERVAL = 0.5  # as often as the worker asks its load function

# the settings the orchestrator worker reads, pointed at the fakes (the model names are
# the ones `harness.fakes.production.chat_script` scripts by)
LOOPBACK_ENV = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",  # never connected to: the jobs have no room
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "bench-secret-of-at-least-32-characters",
    "WORKER_HTTP_PORT": "0",
}
UNSET_ENV = ("PROMETHEUS_PORT", "OTLP_TRACES_ENDPOINT", "WORKER_CAPACITY", "NUM_IDLE_PROCESSES")


# ---------------------------------------------------------------------------- job process


@dataclass(frozen=True)
class JobSpec:
    index: int
    seconds: float
    frame_ms: int
    first_pause: float
    input_rate: int  # the student's audio as the session receives it (Hz)


@dataclass
class SessionResult:
    index: int
    pid: int
    talk_cpu: float  # user + sys of the whole job process, session start to end of talk
    talk_wall: float
    greeting: float | None  # session start to the greeting's first audio
    questions: int
    detected: int
    answered: int
    unanswered: int  # questions with no answer (not counting one still pending at the end)
    latencies: list[float]  # end of the student's speech to the answer's first audio
    lateness: list[float]  # how late the session pulled microphone frames
    underruns: list[float]  # silences inside the tutor's audio
    warnings: dict[str, int]  # warning log messages in the conversation (after the greeting)
    start_warnings: dict[str, int]  # ... from the session's start to its greeting's audio
    threads: int  # the process's threads at the end of the talk (native ones included)


def job_setup(proc: JobProcess) -> None:
    """The process pool's `setup_fnc`: pin to the job core, then the worker's own prewarm."""
    if core := os.environ.get(CORE_ENV):
        pin_process({int(core)})
    from agent.workers import orchestrator

    orchestrator.prewarm(proc)


class _Channel:
    """JSON lines over the job's Unix socket to the benchmark process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, kind: str, payload: Any = None) -> None:
        self.writer.write(json.dumps([kind, payload]).encode() + b"\n")
        await self.writer.drain()

    async def receive(self, expected: str) -> Any:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError(f"the other end closed before {expected!r}")
        kind, payload = json.loads(line)
        if kind != expected:
            raise RuntimeError(f"expected {expected!r}, got {kind!r}")
        return payload


async def job_entrypoint(ctx: JobContext) -> None:
    """The process pool's job entrypoint: the orchestrator's job body on simulated audio."""
    from agent.workers import orchestrator
    from agent.workers.entry import job_models
    from agent.workers.job import JobWiring, run_tutor_job
    from agent.workers.models import dispatcher_for
    from agent.workers.resources import job_moderator, job_writer, resources_of
    from harness.sim_audio import RealtimeSink, SimStudent, load_clip

    channel = _Channel(*await asyncio.open_unix_connection(os.environ[SOCKET_ENV]))
    await channel.send("hello", ctx.job.room.name)  # (a fake job's mock room is "console")
    spec = JobSpec(**await channel.receive("spec"))

    settings = orchestrator.plan.settings
    sink = RealtimeSink()
    student = SimStudent(
        load_clip(FIXTURE, sample_rate=spec.input_rate),
        sink,
        talk_seconds=spec.seconds,
        frame_ms=spec.frame_ms,
        first_pause=spec.first_pause,
        answer_timeout=ANSWER_TIMEOUT,
    )
    heard: list[float] = []
    warnings = WarningCounter()
    start_warnings: Counter[str] = Counter()

    def on_playback(_: Any) -> None:
        nonlocal start_warnings
        if not heard:  # the greeting: what comes next is the conversation
            start_warnings, warnings.counts = warnings.counts, Counter()
        heard.append(time.monotonic())

    sink.on("playback_started", on_playback)

    def prepare(session: Any) -> None:  # where a worker's job has the room's audio
        session.input.audio = student
        session.output.audio = sink

    # what the orchestrator's entrypoint passes (agent/workers/entry.py), no room
    dispatcher = dispatcher_for(settings)
    ctx.add_shutdown_callback(dispatcher.aclose)
    plan = orchestrator.plan
    wiring = JobWiring(
        models=job_models(resources_of(ctx.proc), plan),
        roster=plan.roster,
        worker=plan.name,
        dispatcher=dispatcher,
        workers=plan.roster.elsewhere(plan.name),
        records=job_writer(ctx, settings),
        moderator=job_moderator(ctx),
        prepare_session=prepare,
    )
    await channel.send("ready", os.getpid())
    await channel.receive("go")  # every session of the level is ready

    logging.getLogger().addHandler(warnings)
    cpu0, started = cpu_seconds(), time.monotonic()
    session = await run_tutor_job(ctx, kind="orchestrator", settings=settings, wiring=wiring)
    student.begin()
    await student.talk_done.wait()
    cpu1, ended = cpu_seconds(), time.monotonic()
    logging.getLogger().removeHandler(warnings)

    stats = student.stats
    # a question whose answer may still be on its way when the talk ends is not unanswered
    pending = bool(stats.question_ends) and ended - stats.question_ends[-1] < ANSWER_TIMEOUT
    result = SessionResult(
        index=spec.index,
        pid=os.getpid(),
        talk_cpu=cpu1 - cpu0,
        talk_wall=ended - started,
        greeting=heard[0] - started if heard else None,
        questions=stats.questions,
        detected=sum(
            1 for item in session.history.items if item.type == "message" and item.role == "user"
        ),
        answered=stats.answered,
        unanswered=max(0, stats.questions - stats.answered - pending),
        latencies=stats.answer_latencies,
        lateness=stats.frame_lateness,
        underruns=sink.underruns,
        warnings=dict(warnings.counts),
        start_warnings=dict(start_warnings),
        threads=len(os.listdir("/proc/self/task")),
    )
    await channel.send("done", dataclasses.asdict(result))
    await channel.receive("close")  # memory has been read
    await session.aclose()
    await sink.aclose()
    channel.writer.close()
    ctx.shutdown(reason="capacity level over")


# ---------------------------------------------------------------------- benchmark process


@dataclass
class LevelResult:
    n: int
    seconds: float
    sessions: list[SessionResult]
    setup_wall: float  # pool start to every session ready
    core_busy: float  # the job core's busy share over the talk (every process on it)
    machine_busy: float  # all cores
    parent_cpu: float  # this process (model server, pool supervision), core-s per s
    default_load_max: float  # the framework's default load function, highest sample
    pss_kib: list[int] = field(default_factory=list)
    uss_kib: list[int] = field(default_factory=list)
    pool_warnings: Counter[str] = field(default_factory=Counter)

    def cpu_per_session(self) -> float:
        return sum(s.talk_cpu for s in self.sessions) / sum(s.talk_wall for s in self.sessions)

    def cpu_spread(self) -> float:
        return statistics.pstdev(s.talk_cpu / s.talk_wall for s in self.sessions)

    def sessions_busy(self) -> float:
        """The sessions' CPU as a share of one core over the talk."""
        wall = statistics.fmean(s.talk_wall for s in self.sessions)
        return sum(s.talk_cpu for s in self.sessions) / wall

    def latencies(self) -> list[float]:
        return [x for s in self.sessions for x in s.latencies]

    def lateness(self) -> list[float]:
        return [x for s in self.sessions for x in s.lateness]

    def gaps(self) -> list[float]:
        return [x for s in self.sessions for x in s.underruns if x > GAP_TOLERANCE]

    def greetings(self) -> list[float]:
        return [s.greeting for s in self.sessions if s.greeting is not None]

    def warnings(self) -> Counter[str]:
        """Logged in the conversations (after each greeting), and by the process pool."""
        total: Counter[str] = Counter()
        for s in self.sessions:
            total.update(s.warnings)
        return total + self.pool_warnings

    def start_warnings(self) -> Counter[str]:
        """Logged while the sessions started and greeted (all of them at once)."""
        total: Counter[str] = Counter()
        for s in self.sessions:
            total.update(s.start_warnings)
        return total

    def pss_mib(self) -> float:
        return statistics.fmean(self.pss_kib) / 1024

    def uss_mib(self) -> float:
        return statistics.fmean(self.uss_kib) / 1024


def breaks(level: LevelResult, single: LevelResult) -> list[str]:
    """Why real time broke in this level's conversations (empty: it held). Against the
    single session: end of speech to first audio p95 more than 10% above; any silence
    inside the tutor's audio over 20 ms (and longer than the single session's own); "VAD
    inference is slower than realtime" after the greeting; a student not greeted, or a
    question left unanswered. The start (all sessions at once, up to the greeting) is
    reported beside it, not judged: see `greeting_note`."""
    reasons = []
    latencies, baseline = level.latencies(), single.latencies()
    if latencies and baseline:
        p95, base95 = percentile(latencies, 95), percentile(baseline, 95)
        if p95 > base95 * (1 + LATENCY_TOLERANCE):
            reasons.append(f"latency p95 {p95:.2f} s > {base95:.2f} s + 10%")
    longest_own = max(single.gaps(), default=0.0)
    gaps = [g for g in level.gaps() if g > longest_own + GAP_TOLERANCE]
    if gaps:
        reasons.append(f"{len(gaps)} audio gap(s), up to {max(gaps) * 1000:.0f} ms")
    if slow := level.warnings()[VAD_SLOW]:
        reasons.append(f"{slow} x VAD slower than realtime")
    if missed := sum(not s.greeting for s in level.sessions):
        reasons.append(f"{missed} student(s) not greeted")
    unanswered = sum(s.unanswered for s in level.sessions)
    if unanswered > 0:
        reasons.append(f"{unanswered} question(s) unanswered")
    return reasons


@dataclass
class Frameworks:
    """The framework's defaults (read from the installed livekit-agents) and the project's."""

    load_fnc: Any  # the framework's default load function
    load_threshold: float
    num_idle_processes: int
    memory_warn_mb: float
    memory_limit_mb: float
    init_timeout: float
    close_timeout: float
    session_end_timeout: float
    project: dict[str, Any]  # the orchestrator's `AgentServer` options (server_options)
    project_capacity: int  # sessions the project's worker accepts on this machine
    project_per_core: int  # WORKER_SESSIONS_PER_CORE


def framework_defaults() -> Frameworks:
    from livekit.agents import AgentServer, WorkerOptions
    from livekit.agents.worker import ServerEnvOption

    from agent.config.settings import load_settings
    from agent.workers.admission import capacity
    from agent.workers.server import server_options

    params = inspect.signature(AgentServer.__init__).parameters
    options = WorkerOptions(entrypoint_fnc=job_entrypoint)

    def production(name: str) -> Any:
        return ServerEnvOption.getvalue(params[name].default, False)

    settings = load_settings()
    return Frameworks(
        load_fnc=options.load_fnc,
        load_threshold=production("load_threshold"),
        num_idle_processes=production("num_idle_processes"),
        memory_warn_mb=params["job_memory_warn_mb"].default,
        memory_limit_mb=params["job_memory_limit_mb"].default,
        init_timeout=params["initialize_process_timeout"].default,
        close_timeout=params["shutdown_process_timeout"].default,
        session_end_timeout=params["session_end_timeout"].default,
        project=server_options(settings, settings.orchestrator_agent_name),
        project_capacity=capacity(settings),
        project_per_core=settings.worker_sessions_per_core,
    )


class Hub:
    """The Unix socket every job reports to, and the conversation with each job."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.arrivals: asyncio.Queue[tuple[str, _Channel]] = asyncio.Queue()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            channel = _Channel(reader, writer)
            room = await channel.receive("hello")
            self.arrivals.put_nowait((room, channel))

        self._server = await asyncio.start_unix_server(accept, path=self.path)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def job_info(n: int, i: int, worker: str) -> Any:
    from livekit.agents.job import JobAcceptArguments, RunningJobInfo
    from livekit.protocol import agent, models

    from agent.dispatch.metadata import dispatch_metadata

    room = f"capacity-{n}-{i}"
    job = agent.Job(
        id=f"job-{room}",
        room=models.Room(sid=f"RM_{room}", name=room),
        type=agent.JobType.JT_ROOM,
        agent_name=worker,
        # what a student's token dispatches the orchestrator with
        metadata=dispatch_metadata(session=room, student=f"student-{i}"),
    )
    return RunningJobInfo(
        accept_arguments=JobAcceptArguments(name="", identity=f"agent-{room}", metadata=""),
        job=job,
        url="",
        token="",
        worker_id="bench-capacity",
        fake_job=True,  # no server: the framework gives the job a mock room
    )


async def run_level(
    n: int, opts: Options, hub: Hub, mp_ctx: Any, defaults: Frameworks, job_core: int | None
) -> LevelResult:
    from livekit.agents import JobExecutorType
    from livekit.agents.ipc.proc_pool import ProcPool

    pool_warnings = WarningCounter(pid=os.getpid())  # the pool's own, not the jobs' logs
    logging.getLogger().addHandler(pool_warnings)
    started = time.monotonic()
    pool = ProcPool(
        initialize_process_fnc=job_setup,
        job_entrypoint_fnc=job_entrypoint,
        session_end_fnc=None,
        simulation_end_fnc=None,
        num_idle_processes=n,  # the whole level warm: a class arriving at once
        initialize_timeout=defaults.init_timeout,
        close_timeout=defaults.close_timeout,
        session_end_timeout=defaults.session_end_timeout,
        inference_executor=None,
        job_executor_type=JobExecutorType.PROCESS,
        mp_ctx=mp_ctx,
        memory_warn_mb=defaults.memory_warn_mb,
        memory_limit_mb=defaults.project["job_memory_limit_mb"],
        http_proxy=None,
        loop=asyncio.get_running_loop(),
    )
    channels: dict[str, _Channel] = {}
    try:
        await pool.start()
        pool.set_target_idle_processes(0)  # no replacements spawned during the level
        infos = [job_info(n, i, opts.worker) for i in range(n)]
        async with asyncio.timeout(LEVEL_TIMEOUT):
            await asyncio.gather(*(pool.launch_job(info) for info in infos))
            rooms = {info.job.room.name: i for i, info in enumerate(infos)}
            while len(channels) < n:
                room, channel = await hub.arrivals.get()
                channels[room] = channel
                i = rooms[room]
                spec = JobSpec(
                    i, opts.talk(n), opts.frame_ms, STAGGER_SECONDS * i / n, opts.input_rate
                )
                await channel.send("spec", dataclasses.asdict(spec))
            pids = await asyncio.gather(*(c.receive("ready") for c in channels.values()))
        setup_wall = time.monotonic() - started

        core0, all0, parent0 = core_ticks(job_core), core_ticks(None), cpu_seconds()
        wall0 = time.monotonic()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_load(defaults.load_fnc, stop_sampling))
        for channel in channels.values():
            await channel.send("go")
        async with asyncio.timeout(LEVEL_TIMEOUT + opts.talk(n) * 4):
            done = await asyncio.gather(*(c.receive("done") for c in channels.values()))
        stop_sampling.set()
        default_load = max(await sampler, default=0.0)
        wall = time.monotonic() - wall0
        core1, all1, parent1 = core_ticks(job_core), core_ticks(None), cpu_seconds()
        memory = [read_memory_kib(pid) for pid in pids]  # every session alive and listening
        for channel in channels.values():
            await channel.send("close")
        async with asyncio.timeout(defaults.close_timeout * 2):
            await asyncio.gather(*(proc.join() for proc in list(pool.processes)))
        sessions = [SessionResult(**d) for d in done]
        return LevelResult(
            n=n,
            seconds=opts.talk(n),
            sessions=sorted(sessions, key=lambda s: s.index),
            setup_wall=setup_wall,
            core_busy=busy_share(core0, core1),
            machine_busy=busy_share(all0, all1),
            parent_cpu=(parent1 - parent0) / wall,
            default_load_max=default_load,
            pss_kib=[m[0] for m in memory],
            uss_kib=[m[1] for m in memory],
            pool_warnings=pool_warnings.counts,
        )
    finally:
        logging.getLogger().removeHandler(pool_warnings)
        for channel in channels.values():
            channel.writer.close()
        await pool.aclose()


async def sample_load(load_fnc: Any, stop: asyncio.Event) -> list[float]:
    """The framework's default load (the whole machine's CPU, averaged over 2.5 s), sampled
    as often as a worker asks for it, until `stop`."""
    samples: list[float] = []
    while not stop.is_set():
        samples.append(float(await asyncio.to_thread(load_fnc, None)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LOAD_SAMPLE_INTERVAL)
    return samples


# ---------------------------------------------------------------------------- reporting


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}" if values else "-"


def _s(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q):.2f}" if values else "-"


@dataclass
class Outcome:
    levels: list[LevelResult]
    defaults: Frameworks
    errors: Counter[str]  # error log messages of the whole run (job processes' included)
    held: LevelResult | None  # the highest level before the first that broke
    broke: LevelResult | None  # the first level that broke (None: none did)

    @property
    def single(self) -> LevelResult:
        return self.levels[0]

    def estimated_students(self) -> int:
        """Students per core with WebRTC (estimate): the CPU the sessions used at the highest
        level that held, shared among sessions costing that much plus WebRTC's floor."""
        if self.held is None:
            return 0
        cost = self.held.cpu_per_session()
        return int(self.held.n * cost / (cost + WEBRTC_CORE_PER_SESSION))

    def default_refuses(self) -> list[int]:
        """The levels during which the framework's default load reached its threshold."""
        threshold = self.defaults.load_threshold
        return [lv.n for lv in self.levels if lv.default_load_max >= threshold]


def level_table(outcome: Outcome) -> str:
    rows = []
    capacity = outcome.defaults.project_per_core  # a worker on this one core
    for level in outcome.levels:
        reasons = breaks(level, outcome.single)
        gaps = level.gaps()
        lateness = level.lateness()
        rows.append(
            (
                level.n,
                "held" if not reasons else "broke: " + "; ".join(reasons),
                f"{_s(level.latencies(), 50)} / {_s(level.latencies(), 95)}",
                f"{_s(level.greetings(), 50)} / {max(level.greetings(), default=0):.2f}",
                f"{len(gaps)}" + (f" (max {max(gaps) * 1000:.0f})" if gaps else ""),
                f"{level.start_warnings()[VAD_SLOW]} / {level.warnings()[VAD_SLOW]}",
                f"{_ms(lateness, 95)} / {max(lateness, default=0) * 1000:.0f}",
                f"{level.cpu_per_session():.3f} ±{level.cpu_spread():.3f}",
                f"{level.sessions_busy() * 100:.0f}% / {level.core_busy * 100:.0f}%",
                f"{level.pss_mib():.0f} / {level.uss_mib():.0f}",
                f"{statistics.fmean(s.threads for s in level.sessions):.0f}",
                f"{level.parent_cpu * 100:.0f}%",
                f"{level.default_load_max:.2f}",
                f"{level.n / capacity:.2f}",
            )
        )
    headers = (
        "sessions on the core",
        "real time",
        "end of speech to first audio p50 / p95 s",
        "greeting p50 / max s",
        "gaps > 20 ms (max ms)",
        "VAD slower than realtime: start / conversation",
        "mic frame lateness p95 / max ms",
        "CPU core-s/session-s",
        "job core busy: sessions / all",
        "PSS / USS MiB per session",
        "threads per job",
        "bench process CPU (other core)",
        "framework default load, max",
        "project load, a worker on this core (jobs / WORKER_SESSIONS_PER_CORE)",
    )
    return table(headers, rows)


def summary_table(outcome: Outcome) -> str:
    d = outcome.defaults
    held, broke = outcome.held, outcome.broke
    cores = os.cpu_count() or 1
    if held is None:
        measured = "none held (even one session broke real time)"
        cpu = memory = "-"
    else:
        at_least = "" if broke else ">= "
        limit = f"{held.n}" if broke else f">= {held.n} (no level broke)"
        measured = (
            f"**{limit} in-process sessions per core**; estimated **{at_least}~"
            f"{outcome.estimated_students()} students per core with WebRTC** (estimate: "
            f"+{WEBRTC_CORE_PER_SESSION * 100:.1f}% of a core per session)"
        )
        cpu = (
            f"{held.cpu_per_session() * 100:.1f}% of a core per session in process (at "
            f"{held.n}); + {WEBRTC_CORE_PER_SESSION * 100:.1f}% WebRTC = "
            f"{(held.cpu_per_session() + WEBRTC_CORE_PER_SESSION) * 100:.1f}% (estimate)"
        )
        memory = (
            f"PSS {held.pss_mib():.0f} MiB, USS {held.uss_mib():.0f} MiB per session (at {held.n})"
        )
    refuses = outcome.default_refuses()
    last = outcome.levels[-1]
    framework_admission = (
        f"load = whole machine's CPU averaged over 2.5 s, refused from {d.load_threshold:g}: "
        + (
            f"would have refused new jobs during the level(s) with {', '.join(map(str, refuses))}"
            f" session(s) (whatever else runs on the machine counts)"
            if refuses
            else "never refused here"
        )
        + f"; {last.default_load_max:.2f} at most with {last.n} sessions on 1 of {cores} cores"
    )
    project_admission = (
        f"load = jobs / capacity, refused at 1.0: WORKER_SESSIONS_PER_CORE = "
        f"{d.project_per_core} -> {d.project_per_core} on this core, "
        f"{d.project_capacity} on this {cores}-core machine"
    )
    rows = [
        ("sessions a worker core takes", framework_admission, project_admission, measured),
        ("CPU per session", "-", "-", cpu),
        (
            "memory per job process",
            f"warning at {d.memory_warn_mb:g} MB, no limit"
            if not d.memory_limit_mb
            else f"warning at {d.memory_warn_mb:g} MB, limit {d.memory_limit_mb:g} MB",
            f"JOB_MEMORY_LIMIT_MB = {d.project['job_memory_limit_mb']:g} (0: off)",
            memory,
        ),
        (
            "a class at the bell (every session of a level starting at once)",
            "-",
            "-",
            greeting_note(outcome),
        ),
        (
            "warm job processes",
            f"{d.num_idle_processes}",
            f"{d.project['num_idle_processes']} (NUM_IDLE_PROCESSES: the capacity, at most 8)",
            "pool start to every session ready: "
            f"{outcome.single.setup_wall:.1f} s for 1 (the forkserver's start included)"
            + (f", {held.setup_wall:.1f} s for {held.n}" if held else ""),
        ),
    ]
    return table(("", "framework default", "project default", "measured here"), rows)


def greeting_note(outcome: Outcome) -> str:
    """Session start to the greeting's first audio: single session, and at the highest
    level that held (all its sessions started in the same instant)."""
    single = outcome.single.greetings()
    if not single:
        return "-"
    text = f"greeting {max(single):.2f} s alone"
    if outcome.held is not None and outcome.held.n > 1:
        greetings = outcome.held.greetings()
        text += (
            f"; {statistics.median(greetings):.2f} s median, {max(greetings):.2f} s last of "
            f"{outcome.held.n} starting together"
        )
    bound = max(single) * (1 + LATENCY_TOLERANCE)
    within = 0
    for level in outcome.levels:
        greetings = level.greetings()
        if len(greetings) < level.n or max(greetings) > bound:
            break
        within = level.n
    return text + f"; every greeting within +10% of alone up to {within} at once"


NOTES = """How to read it: each level runs N orchestrator sessions at once, each in its
own job process of the framework's process pool (forkserver with the worker's preloads,
the worker's own `prewarm`: real Silero VAD, the production model clients, the records
store, the moderation client), all N job processes pinned to one core; this benchmark's
process (the pool's supervision and memory monitor, the wire-compatible OpenAI server: LLM
first token {ttft:g} s, TTS first byte {ttfb:g} s then 15 characters a second, moderation
{moderation:g} s) runs on the other core. Each session hears a recorded question at
real-time pace (the framework's local end-of-turn model and default endpointing decide the
turn, so end of speech to first audio includes its wait), is answered by the
orchestrator's handoff to Math, asks again; students' first questions are spread over
{stagger:g} s, their greetings all start at once. Real time *breaks* at a level when, in
the conversations (after each greeting): the end of speech to first audio p95 is more than
10% above the single session's; the tutor's audio has a silence inside it longer than 20
ms (and longer than any the single session had) on a playhead that runs from capture
times, as the room's audio buffer would; the framework warns "VAD inference is slower than
realtime"; or a student is not greeted or a question is left unanswered (one still pending
at the end excepted). Sessions per core is the highest level before the first that broke
(the levels stop there). The start, every session of the level at the same instant up to
its greeting, is shown beside it and not judged (students of a class join within seconds,
not in one instant): its greeting times and its VAD warnings ("start"). *CPU
core-s/session-s*: user+sys CPU of each job process (all its threads) from session start
to the end of the talk, over that time; *job core busy*: the sessions' CPU, and everything
that ran on that core (other work on the machine too), as a share of it. *PSS*:
proportional set size while every session of the level is alive (pages shared with the
forkserver split among the processes); *USS*: private, what each further session adds.
*Framework default load*: the framework's default `load_fnc` sampled every 0.5 s during
the talk (whole machine, averaged over 2.5 s; the worker refuses jobs from {threshold:g});
*project load*: the orchestrator worker's `load_fnc` (jobs over its capacity, refused at
1.0) for a worker given this one core. Not measured: WebRTC (Opus encode/decode, the rtc
SDK's media threads, the room's FFI path; ~4.6% of a core per session on a real server,
issue #16: students per core with WebRTC are an estimate from that figure), the worker's
main process (here the benchmark's process on the other core), real model vendors'
latency."""


def machine_load_note(before: str, after: str) -> str:
    return (
        f"Machine load (/proc/loadavg 1/5/15 min) before: {before}; after: {after}. Other "
        "work on the machine shares both cores: a level can break from it."
    )


def warnings_note(levels: Sequence[LevelResult]) -> str:
    lines = [
        f'- x{level.n}: {count} x "{message}"'
        for level in levels
        for message, count in level.warnings().most_common(3)
    ]
    return "Warnings logged during the talk (most frequent):\n" + "\n".join(lines) if lines else ""


def errors_note(errors: Counter[str]) -> str:
    if not errors:
        return ""
    lines = [f'- {count} x "{message}"' for message, count in errors.most_common(5)]
    return "Errors logged during the run (job processes included):\n" + "\n".join(lines)


def print_progress(level: LevelResult, single: LevelResult) -> None:
    reasons = breaks(level, single)
    print(
        f"  x{level.n}: {level.cpu_per_session():.3f} core-s/s, PSS {level.pss_mib():.0f} MiB, "
        f"p95 {_s(level.latencies(), 95)} s, job core {level.core_busy * 100:.0f}% busy, "
        f"set up in {level.setup_wall:.1f} s: " + ("held" if not reasons else "; ".join(reasons)),
        file=sys.stderr,
        flush=True,
    )


# ---------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class Options:
    levels: tuple[int, ...]
    seconds: float
    frame_ms: int
    append: bool
    stop: bool  # stop at the first level that breaks
    pin: bool
    input_rate: int  # the student's audio as the sessions receive it (Hz)
    baseline_factor: float = 1.0  # the single session talks this much longer (more samples)
    worker: str = "learning-orchestrator"

    def talk(self, n: int) -> float:
        return self.seconds * (self.baseline_factor if n == 1 else 1.0)


def project_input_rate() -> int:
    from agent.config.settings import Settings

    return int(Settings.model_fields["audio_input_sample_rate"].default)


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench capacity", description=__doc__)
    parser.add_argument(
        "--sessions",
        default=",".join(map(str, DEFAULT_LEVELS)),
        help="comma-separated levels, stepped up in order (default %(default)s; 1 is added)",
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
        help=f"CI size: levels {QUICK_LEVELS}, {QUICK_SECONDS:g} s of talk",
    )
    parser.add_argument("--frame-ms", type=int, default=50, help="microphone frame size")
    parser.add_argument(
        "--all-levels", action="store_true", help="run every level, not stop at the first break"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the job processes")
    parser.add_argument(
        "--input-rate",
        type=int,
        choices=(16000, 24000),
        help="the student's audio as the sessions receive it, Hz (default: the project's "
        "AUDIO_INPUT_SAMPLE_RATE; 24000 is the framework's)",
    )
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        levels = QUICK_LEVELS if args.quick else tuple(int(x) for x in args.sessions.split(","))
    except ValueError:
        parser.error("--sessions takes comma-separated integers, e.g. 1,2,4,8")
    if min(levels) < 1 or args.seconds <= 0:
        parser.error("--sessions and --seconds must be positive")
    levels = tuple(sorted({1, *levels}))  # the single session is the baseline
    return Options(
        levels=levels,
        seconds=QUICK_SECONDS if args.quick else args.seconds,
        frame_ms=args.frame_ms,
        append=not args.no_append,
        stop=not args.all_levels,
        pin=not args.no_pin,
        input_rate=args.input_rate or project_input_rate(),
        baseline_factor=1.0 if args.quick else BASELINE_FACTOR,
    )


def configure_environment(fake_url: str, workdir: Path, job_core: int | None) -> str:
    """The orchestrator worker's settings, pointed at the fakes (inherited by the
    forkserver, hence by every job process). Returns the records URL."""
    from harness.fakes.openai_server import API_KEY
    from harness.fakes.production import MODELS

    records_url = f"sqlite+aiosqlite:///{workdir / 'tutor.db'}"
    env = {
        **LOOPBACK_ENV,
        "OPENAI_BASE_URL": fake_url,
        "OPENAI_API_KEY": API_KEY,
        "ORCHESTRATOR_LLM_MODEL": MODELS["orchestrator"],
        "MATH_LLM_MODEL": MODELS["math"],
        "HISTORY_LLM_MODEL": MODELS["history"],
        "ENGLISH_LLM_MODEL": MODELS["english"],
        "STT_MODEL": "stt-model",
        "TTS_MODEL": "tts-model",
        "RECORDS_URL": records_url,
        "LINE_CACHE_DIR": str(workdir / "lines"),
        SOCKET_ENV: str(workdir / "jobs.sock"),
        CORE_ENV: "" if job_core is None else str(job_core),
    }
    for name in (*CLOUD_ENV, *UNSET_ENV):
        os.environ.pop(name, None)
    os.environ.update(env)
    return records_url


async def migrate(url: str) -> None:
    """The records file migrated first, as a deployed database already is."""
    from agent.records import RecordsStore

    store = RecordsStore(url)
    try:
        await store.ensure_schema()
    finally:
        await store.aclose()


async def run_levels(opts: Options, workdir: Path, job_core: int | None) -> Outcome:
    from harness.fakes.openai_server import VOICE_SECONDS_PER_CHAR, FakeOpenAI
    from harness.fakes.production import SEVEN_EIGHTS, chat_script

    fake = FakeOpenAI(
        chat=chat_script,
        transcribe=lambda audio: SEVEN_EIGHTS,
        llm_ttft=LLM_TTFT,
        tts_ttfb=TTS_TTFB,
        tts_seconds_per_char=VOICE_SECONDS_PER_CHAR,
        moderation_delay=MODERATION_DELAY,
    )
    async with fake:
        await migrate(configure_environment(fake.url, workdir, job_core))
        defaults = framework_defaults()
        defaults.load_fnc(None)  # starts its sampling thread: warm by the first level's talk
        mp_ctx = forkserver_context()
        hub = Hub(os.environ[SOCKET_ENV])
        await hub.start()
        errors = WarningCounter(level=logging.ERROR)
        logging.getLogger().addHandler(errors)
        levels: list[LevelResult] = []
        held = broke = None
        try:
            for n in opts.levels:
                print(f"capacity: {n} session(s) x {opts.talk(n):g} s ...", file=sys.stderr)
                level = await run_level(n, opts, hub, mp_ctx, defaults, job_core)
                levels.append(level)
                print_progress(level, levels[0])
                if breaks(level, levels[0]):
                    broke = broke or level
                    if opts.stop:
                        break
                elif broke is None:
                    held = level
        finally:
            logging.getLogger().removeHandler(errors)
            await hub.aclose()
        fake.check()
    return Outcome(levels, defaults, errors.counts, held=held, broke=broke)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str]) -> int:
    if "--real-server" in argv:
        from bench import capacity_realserver

        return capacity_realserver.main(argv)
    opts = parse_options(argv)
    logging.basicConfig(level=logging.WARNING, handlers=[_errors_only()])
    cpus = sorted(os.sched_getaffinity(0))
    job_core = cpus[-1] if opts.pin and len(cpus) > 1 else None
    if job_core is not None:
        pin_process(set(cpus[:-1]))  # this process and all it starts, until a job re-pins
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as workdir:
        outcome = asyncio.run(run_levels(opts, Path(workdir), job_core))
    pinning = (
        f"Job processes pinned to core {job_core}; this process on core(s) "
        f"{', '.join(map(str, cpus[:-1]))}."
        if job_core is not None
        else "Not pinned: the job processes shared every core with this process."
    )
    notes = NOTES.format(
        ttft=LLM_TTFT,
        ttfb=TTS_TTFB,
        moderation=MODERATION_DELAY,
        stagger=STAGGER_SECONDS,
        threshold=outcome.defaults.load_threshold,
    )
    report(
        f"Capacity: sessions per worker core in real time, {opts.seconds:g} s of talk, "
        f"student audio at {opts.input_rate // 1000} kHz"
        + (f" (the single session {opts.talk(1):g} s)" if opts.talk(1) != opts.seconds else ""),
        f"{summary_table(outcome)}\n\n{level_table(outcome)}",
        append=opts.append,
        notes="\n\n".join(
            filter(
                None,
                [
                    notes,
                    pinning + " " + machine_load_note(before, loadavg()),
                    warnings_note(outcome.levels),
                    errors_note(outcome.errors),
                ],
            )
        ),
    )
    return 0


def _errors_only() -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler
