"""A named worker's `AgentServer`: the modules its forkserver preloads, its options
(health port, capacity and admission, warm pool, drain, memory guard, Prometheus), its
main-process maintenance and its published health port; jobs in threads made safe."""

from __future__ import annotations

import gc
import importlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livekit.agents import AgentServer, JobExecutorType, JobProcess

from agent.config.settings import Settings
from agent.framework import FRAMEWORK_PRELOAD, create_ffi_client
from agent.workers.admission import (
    capacity,
    capacity_load,
    job_cpus,
    warm_pool_follows_jobs,
    warm_pool_size,
)
from agent.workers.cpus import TreeCpuShare, usable_cpus
from agent.workers.health import port_file
from agent.workers.maintenance import schedule_line_warmup, schedule_maintenance

logger = logging.getLogger("tutor.worker")


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
    for module in [*PRELOAD_MODULES, FRAMEWORK_PRELOAD]:
        importlib.import_module(module)
    create_ffi_client()
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
