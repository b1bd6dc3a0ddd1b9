"""How many CPUs this worker may really use: its affinity (`taskset`, a pinned container)
and its cgroup's CPU quota (what `docker compose` `cpus:` and Kubernetes limits set), not
the host's core count, which a worker in a 1-CPU container would otherwise admit for; and
how much of them the worker's processes are using (`TreeCpuShare`), so that a worker whose
CPUs are spent refuses new students before its sessions go silent."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import psutil

logger = logging.getLogger("tutor.worker")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path | None = None) -> float:
    """The CPUs this process may use: the fewer of its affinity and its cgroup quota."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup or Path("/proc/self/cgroup"))
    return min(cpus, quota) if quota is not None else cpus


def cgroup_cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """CPUs of the cgroup's quota (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us` over
    `cpu.cfs_period_us`), the tightest along this process's cgroup path; None if unlimited
    or unknown."""
    limits = [
        quota
        for folder in _cgroup_folders(cgroup_root, proc_cgroup)
        if (quota := _quota_in(folder)) is not None
    ]
    return min(limits) if limits else None


def _cgroup_folders(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """The cgroup folders that may limit this process: its own and every parent (v2), the
    v1 `cpu` hierarchy's, and the root (inside a container, the container's own)."""
    folders = [cgroup_root, cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"]
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return folders
    for line in lines:
        fields = line.split(":", 2)  # hierarchy id, controllers, path
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers not in ("", "cpu", "cpu,cpuacct", "cpuacct,cpu"):
            continue
        base = cgroup_root if controllers == "" else cgroup_root / controllers
        parts = [p for p in path.strip("/").split("/") if p]
        folders += [base.joinpath(*parts[:depth]) for depth in range(1, len(parts) + 1)]
    return folders


def _quota_in(folder: Path) -> float | None:
    try:
        v2 = folder / "cpu.max"
        if v2.exists():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or 100_000)
        v1 = folder / "cpu.cfs_quota_us"
        if v1.exists():
            quota_us = int(v1.read_text().strip())
            if quota_us <= 0:
                return None
            return quota_us / int((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError, ZeroDivisionError) as exc:
        logger.warning("unreadable CPU quota in %s: %s", folder, type(exc).__name__)
    return None


class TreeCpuShare:
    """How much of its usable CPUs this worker's processes (itself and every job process)
    have been using without a break: the least busy `interval` of the last `samples` (10 s),
    sampled on a thread of its own. A burst (a class's sessions starting, warm processes
    loading) is not an overload; CPUs spent for that long, every half second, are."""

    def __init__(self, usable: float, interval: float = 0.5, samples: int = 20) -> None:
        self.usable = usable
        self.interval = interval
        self._samples: deque[float] = deque(maxlen=samples)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def share(self) -> float:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="tutor-cpu-share")
            self._thread.start()
        with self._lock:
            full = len(self._samples) == self._samples.maxlen
            return min(self._samples) if full else 0.0

    def _run(self) -> None:
        before, at = tree_cpu_seconds(), time.monotonic()
        while True:
            time.sleep(self.interval)
            now, seconds = time.monotonic(), tree_cpu_seconds()
            used = max(0.0, seconds - before) / max(1e-6, now - at) / self.usable
            before, at = seconds, now
            with self._lock:
                self._samples.append(used)


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user and system) of a process and every process under it, now."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += times.user + times.system
    return total
