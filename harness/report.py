"""Tables printed to the terminal and appended to BENCHMARKS.md with how they were made."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from harness import REPO

BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str, *, append: bool = True, notes: str = "") -> str:
    """Print the section; append it to BENCHMARKS.md unless `append` is False."""
    command = "python -m bench " + shlex.join(sys.argv[1:])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}\n\n- date: {when}\n- machine: {machine()}\n- command: `{command}`\n\n"
        f"{body}\n" + (f"\n{notes}\n" if notes else "")
    )
    print(section)
    if append:
        if not BENCHMARKS_MD.exists():
            BENCHMARKS_MD.write_text(
                "# Benchmarks\n\nFigures appended by `python -m bench ...` (see README).\n\n"
            )
        with BENCHMARKS_MD.open("a") as f:
            f.write(section + "\n")
    return section
