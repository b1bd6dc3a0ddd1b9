"""How many students a worker admits: its capacity (per core of the CPUs its jobs can use,
or a setting), the load it reports (full at capacity, or while its CPUs are spent), and the
warm pool of job processes kept for a class arriving at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from livekit.agents import AgentServer

from agent.config.settings import CapacitySettings
from agent.framework import limit_idle_processes, on_process_pool
from agent.telemetry import metrics
from agent.workers.cpus import usable_cpus

logger = logging.getLogger("tutor.worker")


def capacity(settings: CapacitySettings, cpus: float | None = None) -> int:
    """Sessions this worker accepts: the setting, else per core times the CPUs its jobs can
    use (`job_cpus` of `usable_cpus`: affinity and cgroup quota), at least one."""
    if settings.worker_capacity:
        return settings.worker_capacity
    usable = usable_cpus() if cpus is None else cpus
    return max(1, int(settings.worker_sessions_per_core * job_cpus(settings, usable)))


def job_cpus(settings: CapacitySettings, usable: float) -> float:
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


def warm_pool_size(settings: CapacitySettings, sessions: int) -> int:
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
        limit_idle_processes(server, max(0, sessions - len(server.active_jobs)))

    def on_started() -> None:
        # the framework's pool exists once the server runs; no public handle on it
        on_process_pool(server, "process_job_launched", follow)
        on_process_pool(server, "process_closed", follow)

    server.on("worker_started", on_started)
