"""`python -m bench NAME [options]`: run one benchmark (see BENCHMARKS below)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "handoff",
    "soak",
    "density",
    "moderation",
    "startup",
    "turns",
    "vad",
    "crossing",
    "capacity",
    "realserver",
    "resume",
    "live",
)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [--help]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
