"""What a worker builds once per process, and what each job gets from it.

Per job process (`prewarm`, before a job is assigned): the records store (one connection
pool), the moderation client, the fixed lines' audio cache and the trace exporter (the
workers add their model clients).
Per job: a `RecordWriter` flushed when the job shuts down. Per worker (main process): the
Prometheus endpoint, the alert delivery loop and the records retention purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from livekit.agents import AgentServer, JobContext, JobExecutorType, JobProcess

from agent.config.roster import roster_for
from agent.config.settings import Settings
from agent.conversation.lines import LineCache, handoff_lines, set_line_cache, warm_lines
from agent.records import RecordsStore, RecordWriter
from agent.safety.alerts import deliver_forever, delivery_config
from agent.safety.moderation import Moderator, Policy
from agent.telemetry import metrics
from agent.telemetry.tracing import configure_tracing
from agent.workers.cpus import TreeCpuShare, usable_cpus
from agent.workers.health import port_file
from agent.workers.models import moderation_client, voice_tts
from agent.workers.warmup import warm_records_models

logger = logging.getLogger("tutor.worker")

RECORDS_KEY = "records"
MODERATOR_KEY = "moderator"
PURGE_INTERVAL = 24 * 3600.0
LINE_WARMUP_TIMEOUT = 120.0
# imported once in the worker's forkserver, so every job process shares them (copy-on-write)
# instead of importing them itself: the job body, the records store and its drivers
PRELOAD_MODULES = [
    "agent.workers.job",
    "agent.records.store",
    "agent.records.writer",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "alembic.command",
    "alembic.runtime.migration",
    # the connection pool of the OpenAI clients imports these on its first request
    "anyio._backends._asyncio",
    # the TLS contexts every job's model clients share, built once here
    "agent.workers.tls",
    # the platform the clients' headers name and the captions' syllable patterns
    "agent.workers.inherited",
    # imported on a job's loop otherwise (seen holding it 100-200 ms on a busy core): the
    # clients' chat and audio resources, on their first request; the session's toolsets
    "openai.resources.chat",
    "openai.resources.audio",
    "livekit.agents.llm.async_toolset",
]


def capacity(settings: Settings, cpus: float | None = None) -> int:
    """Sessions this worker accepts: the setting, else per core times the CPUs its jobs can
    use (`job_cpus` of `usable_cpus`: affinity and cgroup quota), at least one."""
    if settings.worker_capacity:
        return settings.worker_capacity
    usable = usable_cpus() if cpus is None else cpus
    return max(1, int(settings.worker_sessions_per_core * job_cpus(settings, usable)))


def job_cpus(settings: Settings, usable: float) -> float:
    """The CPUs a worker's jobs can keep busy: all it may use, with a process each; with
    threads one interpreter runs every job's Python, one thread at a time: one core at most
    (more cores: more workers)."""
    return min(usable, 1.0) if settings.job_executor == "thread" else usable


def capacity_load(
    sessions: int, cpu_limit: float = 1.0, cpu_share: Callable[[], float] | None = None
) -> Callable[[AgentServer], float]:
    """The load the worker reports: its running jobs over its capacity, so the server stops
    sending jobs exactly at capacity, whatever else runs on the machine; and full (1.0)
    while it has sessions and its processes have used `cpu_limit` or more of its CPUs over
    the last seconds (`cpu_share`): its sessions are falling behind real time, so new
    students go elsewhere first. A worker with no session is never refused for its CPU
    (its own start, warm processes loading, is not a reason to turn a class away)."""
    overloaded = False

    def load(server: AgentServer) -> float:
        nonlocal overloaded
        jobs = len(server.active_jobs)
        share = cpu_share() if cpu_share is not None and jobs else 0.0
        if (share >= cpu_limit) != overloaded:
            overloaded = not overloaded
            metrics.WORKER_OVERLOADED.set(int(overloaded))
            if overloaded:
                metrics.WORKER_OVERLOADS.inc()
                logger.warning(
                    "worker overloaded: its processes used %.0f%% of its CPUs with %d "
                    "sessions; new students go to other workers",
                    share * 100,
                    jobs,
                )
        if overloaded:
            return 1.0
        return min(1.0, jobs / sessions)

    return load


def warm_pool_size(settings: Settings, sessions: int) -> int:
    """Job processes kept warm: the setting, else one per session the worker admits, so a
    whole class arriving at the bell finds a process each (a cold one starts on the CPUs
    the class is already greeting with)."""
    return settings.num_idle_processes or sessions


def warm_pool_follows_jobs(server: AgentServer, sessions: int) -> None:
    """Keep no more processes warm than the sessions still free, from the moment a job
    takes one. The framework lowers its pool's target only on its 0.5 s load tick, and its
    pool tops itself up every 0.1 s: at the bell each taken process is replaced by a new one
    (its prewarm on the core the class is being greeted on) that no student can use."""

    def follow(_proc: object) -> None:
        # the framework's pool exists once the server runs; no public handle on it
        pool = server._proc_pool
        free = max(0, sessions - len(server.active_jobs))
        pool.set_target_idle_processes(min(pool._default_num_idle_processes, free))

    def on_started() -> None:
        server._proc_pool.on("process_job_launched", follow)
        server._proc_pool.on("process_closed", follow)

    server.on("worker_started", on_started)


def server_options(settings: Settings, worker: str, usable: float | None = None) -> dict[str, Any]:
    """`AgentServer` keyword arguments: health port, preloads, capacity and admission, warm
    pool, drain, memory guard and, if asked for, Prometheus. `usable`: the CPUs the worker
    may use (read here if not given)."""
    usable = usable_cpus() if usable is None else usable
    sessions = capacity(settings, usable)
    # WORKER_CPU_LIMIT=1: only the session count limits the worker (nothing to measure)
    cpu_share = (
        TreeCpuShare(job_cpus(settings, usable)).share if settings.worker_cpu_limit < 1 else None
    )
    options: dict[str, Any] = {
        "port": settings.worker_http_port,
        "preload_modules": PRELOAD_MODULES,
        "load_fnc": capacity_load(sessions, settings.worker_cpu_limit, cpu_share),
        "load_threshold": 1.0,  # unavailable once every session slot is taken
        "num_idle_processes": warm_pool_size(settings, sessions),
        "job_executor_type": JobExecutorType(settings.job_executor),
        "drain_timeout": settings.drain_timeout,
        "job_memory_limit_mb": settings.job_memory_limit_mb,
    }
    if settings.prometheus_port is not None:
        options["prometheus_port"] = settings.prometheus_port
        # job processes write our series here; the worker's /metrics collects them
        options["prometheus_multiproc_dir"] = settings.prometheus_multiproc_dir or str(
            Path(tempfile.gettempdir()) / f"voice-tutor-metrics-{worker}"
        )
    return options


def open_store(settings: Settings) -> RecordsStore | None:
    return RecordsStore(settings.records_url) if settings.records_url else None


def build_moderator(settings: Settings) -> Moderator | None:
    if not settings.moderation_enabled:
        logger.warning("MODERATION_ENABLED=false: nothing the students or tutors say is checked")
        return None
    categories = [c.strip() for c in settings.moderation_urgent_categories.split(",") if c.strip()]
    return Moderator(
        moderation_client(settings),
        model=settings.moderation_model,
        timeout=settings.moderation_timeout,
        policy=Policy(
            concern_threshold=settings.moderation_concern_threshold,
            urgent_threshold=settings.moderation_urgent_threshold,
            urgent_categories=categories,
        ),
    )


def prewarm_process(proc: JobProcess, settings: Settings, worker: str) -> None:
    """Once per job process: the records store, the moderation client, the trace exporter."""
    proc.userdata[RECORDS_KEY] = open_store(settings)
    if settings.records_url:
        warm_records_models()
    proc.userdata[MODERATOR_KEY] = build_moderator(settings)
    set_line_cache(LineCache(line_cache_directory(settings)))
    configure_tracing(
        settings.otlp_traces_endpoint, service=worker, allow_pii=settings.traces_allow_pii
    )


def job_writer(ctx: JobContext, settings: Settings) -> RecordWriter | None:
    """This job's record writer (None when records are off), flushed at shutdown."""
    store: RecordsStore | None = ctx.proc.userdata.get(RECORDS_KEY)
    if store is None:
        return None
    writer = RecordWriter(store, flush_timeout=settings.records_flush_timeout)

    # no parameter: the framework passes the shutdown reason to a callback that takes one
    # (it would land in `aclose`'s timeout)
    async def flush_records() -> None:
        await writer.aclose()

    ctx.add_shutdown_callback(flush_records)
    return writer


def job_moderator(ctx: JobContext) -> Moderator | None:
    moderator: Moderator | None = ctx.proc.userdata.get(MODERATOR_KEY)
    return moderator


def worker_server(
    setup_fnc: Callable[[JobProcess], Any], settings: Settings, worker: str
) -> AgentServer:
    """A named worker's `AgentServer`: its options, its main-process maintenance (alerts,
    retention) and its published health port."""
    usable = usable_cpus()
    if settings.job_executor == "thread":
        prepare_job_threads()
    server = AgentServer(setup_fnc=setup_fnc, **server_options(settings, worker, usable))
    warm_pool_follows_jobs(server, capacity(settings, usable))
    schedule_maintenance(server, settings)
    schedule_line_warmup(server, settings, worker)
    publish_health_port(server, worker)
    return server


def prepare_job_threads() -> None:
    """Jobs in threads have no forkserver: the worker's own process does its work once, on
    this thread, before any job thread exists.

    - `PRELOAD_MODULES` and the framework's own warm-up (else the first jobs import them at
      the bell, alembic among them), then frozen out of the collector's reach: one heap holds
      every session, and a full collection that walked the imports too held every loop
      200-270 ms at the bell.
    - The one FFI client every job shares. livekit 1.1.21 creates it on first use without a
      lock: ten job threads connecting at once made ten (at times a panic in the native
      runtime). A job listening to a client that lost the race never hears its own connect,
      and 15 s later the SDK ends the process over that room's unfinished handshake: every
      student on the worker loses their tutor.
    """
    from livekit.rtc._ffi_client import FfiClient

    for module in [*PRELOAD_MODULES, "livekit.agents.ipc._preload"]:
        importlib.import_module(module)
    FfiClient.instance  # noqa: B018  (created on first access)
    gc.collect()
    gc.freeze()


def publish_health_port(server: AgentServer, worker: str) -> None:
    """Once listening, write the health endpoint's port for `agent.workers.health` (with
    `WORKER_HTTP_PORT=0` the system picks it: replicas on one network never collide)."""

    def on_started() -> None:
        path = port_file(worker)
        path.write_text(str(server.worker_info.http_port))
        logger.info("health endpoint", extra={"port": server.worker_info.http_port})

    server.on("worker_started", on_started)


class BackgroundWork:
    """Work of the worker's main process on a thread and event loop of its own, so that it
    never holds the loop that takes jobs and talks to LiveKit (opening the records store:
    imports, mapper set-up, migrations; each purge; synthesising fixed lines). A daemon: it
    ends with the worker."""

    def __init__(self, name: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.name = name
        self._work = work
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._work(), name=self.name)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        # not closed: a database driver's thread may still hand a cancelled query's result
        # to this loop, which must then accept it (a closed loop raises in that thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the work and wait for its thread (tests; a worker just exits)."""
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)


def line_cache_directory(settings: Settings) -> Path:
    return Path(settings.line_cache_dir or Path(tempfile.gettempdir()) / "voice-tutor-lines")


def schedule_line_warmup(server: AgentServer, settings: Settings, worker: str) -> BackgroundWork:
    """Once the worker has started: synthesise every handoff line its tutors can say into
    the machine's line cache, so that no student waits for one (the first use would
    synthesise it on the spot, after the floor is free)."""

    async def warm() -> None:
        roster = roster_for(settings)
        # a pipeline worker can run every tutor (a realtime one as its fallback)
        speakers = (
            roster.tutors if roster.mode_of(worker) == "pipeline" else roster.hosted_on(worker)
        )
        lines = handoff_lines(roster, speakers)
        voices = {voice: voice_tts(settings, voice) for voice, _ in lines}
        try:
            made = await asyncio.wait_for(
                warm_lines(LineCache(line_cache_directory(settings)), voices, lines),
                LINE_WARMUP_TIMEOUT,
            )
            logger.info("fixed lines ready", extra={"lines": len(lines), "synthesised": made})
        except TimeoutError:
            logger.warning("fixed lines were not all ready in time; the rest on first use")
        finally:
            for voice in voices.values():
                await voice.aclose()

    warmup = BackgroundWork("line-warmup", warm)
    server.on("worker_started", warmup.start)
    return warmup


def schedule_maintenance(server: AgentServer, settings: Settings) -> BackgroundWork | None:
    """From the worker's main process, which outlives jobs, on one records store: deliver
    the outbox's alerts, and purge records older than `RECORDS_RETENTION_DAYS` (at start,
    then daily). Started once the worker has started."""
    if not settings.records_url:
        return None
    if not settings.alert_webhook_secret and (
        settings.teacher_webhook_url or settings.safeguarding_webhook_url
    ):
        logger.warning("ALERT_WEBHOOK_SECRET is empty: alerts are signed with an empty key")

    async def maintain() -> None:
        store = RecordsStore(settings.records_url)
        try:
            await purge(store, settings.records_retention_days)  # first, once at start
            await asyncio.gather(
                deliver_forever(store, delivery_config(settings), settings.alert_poll_interval),
                purge_periodically(store, settings.records_retention_days),
            )
        finally:
            await store.aclose()

    maintenance = BackgroundWork("records-maintenance", maintain)
    server.on("worker_started", maintenance.start)
    return maintenance


async def purge(store: RecordsStore, days: float) -> None:
    try:
        await store.purge(older_than_days=days)
    except Exception as exc:
        logger.warning("records purge failed: %s", type(exc).__name__)


async def purge_periodically(
    store: RecordsStore, days: float, interval: float = PURGE_INTERVAL
) -> None:
    while True:
        await asyncio.sleep(interval)  # a schedule, not a coordination
        await purge(store, days)
