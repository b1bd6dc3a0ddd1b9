"""Measurement helpers the benchmarks share: CPU time of this process, of one core and of
the machine, a process's memory, pinning to cores, a forkserver that preloads what the
worker's does, and a counter of the warnings a run logged."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.context
import os
import re
import resource
from collections import Counter

# production defaults: the local end-of-turn model, no cloud models
CLOUD_ENV = ("LIVEKIT_DEV_MODE", "LIVEKIT_REMOTE_EOT_URL")
FRAMEWORK_PRELOAD = ("livekit.agents.ipc._preload", "livekit.agents.ipc._preload_freeze")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pin_process(cpus: set[int]) -> None:
    """Pin every thread of this process (threads started later inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread just ended
            os.sched_setaffinity(int(tid), cpus)


def machine_busy_seconds() -> float:
    """CPU time spent by all processes on all cores since boot (/proc/stat), in seconds."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def read_memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, USS) of a process in KiB, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0])
    return fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def forkserver_context() -> multiprocessing.context.ForkServerContext:
    """A forkserver preloading what the orchestrator worker's forkserver preloads (the
    registered plugins, the worker's `preload_modules`, the framework's warm-up)."""
    from livekit.agents import Plugin
    from livekit.plugins import openai, silero  # noqa: F401  (registers them, as the worker does)

    for name in CLOUD_ENV:  # production defaults: local end-of-turn model, no cloud models
        os.environ.pop(name, None)
    from agent.workers.server import PRELOAD_MODULES

    ctx = multiprocessing.get_context("forkserver")
    plugins = [p.package for p in Plugin.registered_plugins]
    ctx.set_forkserver_preload([*dict.fromkeys([*plugins, *PRELOAD_MODULES]), *FRAMEWORK_PRELOAD])
    return ctx


def core_ticks(core: int | None) -> tuple[int, int]:
    """(busy, total) clock ticks of one core (None: all cores) since boot, /proc/stat."""
    name = "cpu" if core is None else f"cpu{core}"
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == name:
                ticks = [int(x) for x in fields[1:9]]
                idle = ticks[3] + ticks[4]  # idle + iowait
                return sum(ticks) - idle, sum(ticks)
    raise LookupError(name)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


class WarningCounter(logging.Handler):
    """Warnings counted by message, numbers masked (`pid`: only those logged by `pid`)."""

    def __init__(self, pid: int | None = None, level: int = logging.WARNING) -> None:
        super().__init__(level=level)
        self.counts: Counter[str] = Counter()
        self._pid = pid

    def emit(self, record: logging.LogRecord) -> None:
        if self._pid is not None and record.process != self._pid:
            return
        lines = record.getMessage().strip().splitlines() or [""]
        key = lines[0]
        if record.exc_info and record.exc_info[1] is not None:
            key += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        elif len(lines) > 1:  # a traceback forwarded as text: its last line names the error
            key += f" ({lines[-1].strip()})"
        self.counts[re.sub(r"\d+", "N", key)[:200]] += 1
