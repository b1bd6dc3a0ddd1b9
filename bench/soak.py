"""`python -m bench soak`: randomized conversations with faults injected into dispatch
(`harness.soak`), reported with its invariants.

Options: `--conversations N` (1000), `--seed S`, `--concurrency C` (8), `--slower F` (every
timeout and delay times F), `--no-append` (do not write BENCHMARKS.md). Exit code 1 if any
invariant was violated.
"""

from __future__ import annotations

import argparse
import asyncio

from agent.handover.protocol import Outcome
from harness.report import percentile, report, table
from harness.soak import INVARIANTS, NOT_ATTEMPTS, SoakConfig, SoakResult, run_soak


def rows(result: SoakResult) -> list[tuple[str, object]]:
    attempts = {k: v for k, v in result.attempts.items() if k.split(":")[0] not in NOT_ATTEMPTS}
    retries = sum(v for k, v in attempts.items() if k.endswith(":retry"))
    out: list[tuple[str, object]] = [
        ("conversations", result.conversations),
        ("student turns", result.turns),
        ("handoffs in-session", result.in_session_handoffs),
        ("cross-worker handovers attempted", sum(result.crossings.values())),
        ("... completed", result.crossings_completed),
        ("... fell back", result.crossings_fell_back),
        ("...... incoming tutor not ready in time", result.crossings[Outcome.NOT_READY.value]),
        ("...... dispatch failed", result.crossings[Outcome.DISPATCH_FAILED.value]),
        ("dispatch attempts finished (client)", sum(attempts.values())),
        ("... retries", retries),
        ("... retries that found the dispatch already made", count(result, "found_existing")),
        ("... list checks before a retry that failed", count(result, "list_failed")),
        ("CreateDispatch calls (server)", result.create_calls),
        ("DeleteDispatch calls (server)", result.delete_calls),
    ]
    out += [(f"faults injected: {k}", result.faults[k]) for k in ("500", "hang", "reset")]
    out.append(("faults injected: incoming tutor never ready", result.faults["unready"]))
    out += [(f"violations: {k}", result.violations[k]) for k in INVARIANTS]
    for kind, values in sorted(result.latencies.items()):
        p50, p95 = percentile(values, 50), percentile(values, 95)
        out.append(
            (f"time to answer, {kind.replace('_', ' ')} (p50 / p95 s)", f"{p50:.3f} / {p95:.3f}")
        )
    out.append(("wall time (s)", f"{result.wall:.1f}"))
    return out


def count(result: SoakResult, outcome: str) -> int:
    return sum(v for k, v in result.attempts.items() if k.split(":")[0] == outcome)


def notes(config: SoakConfig, result: SoakResult) -> str:
    rates = config.faults
    lines = [
        f"Seed {config.seed}, {config.concurrency} conversations at a time, "
        f"{config.min_turns}-{config.max_turns} student turns each. Faults per CreateDispatch: "
        f"{rates.server_error:.0%} 500, {rates.hang:.0%} hang, {rates.reset:.0%} reset; "
        f"{rates.unready:.0%} of created dispatches never come up, the others start "
        f"{config.job_start[0]:g}-{config.job_start[1]:g}s after their dispatch. Attempt timeout "
        f"{config.policy.attempt_timeout:g}s, {config.policy.max_attempts} attempts, backoff "
        f"from {config.policy.backoff_base:g}s, handover ready timeout {config.ready_timeout:g}s. "
        "Time to answer: from the student's text to the answer (text mode, scripted models); "
        "a completed handover includes the simulated job start.",
    ]
    lines += [f"- {detail}: {n}" for detail, n in result.details.most_common()]
    lines += [f"  - e.g. {example}" for example in result.examples[:10]]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak",
        description="Randomized conversations with faults injected into dispatch.",
    )
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--slower", type=float, default=1.0, help="multiply every timeout and delay by this"
    )
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    config = SoakConfig(
        conversations=args.conversations, seed=args.seed, concurrency=args.concurrency
    ).slowed(args.slower)
    result = asyncio.run(run_soak(config))
    body = table(("measure", "value"), rows(result))
    title = f"Soak: {result.conversations} conversations with injected faults"
    report(title, body, append=not args.no_append, notes=notes(config, result))
    return 1 if result.violated else 0
