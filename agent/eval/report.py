"""What a run says: routing accuracy overall and per expected tutor, the confusion table,
every miss with its conversation, safety-path recall, cost and latency, the judges' pass
rates; as JSON and as Markdown, and what changed against a baseline run."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agent.eval.cases import SAFETY
from agent.eval.run import CaseResult


def summarise(
    results: Sequence[CaseResult],
    *,
    models: str,
    price_in: float | None = None,
    price_out: float | None = None,
) -> dict[str, Any]:
    """The report as one JSON-ready document (`price_*`: US dollars per million tokens)."""
    per_expected: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        per_expected[result.expect]["n"] += 1
        per_expected[result.expect]["correct"] += result.correct
        confusion[result.expect][result.outcome] += 1
    safety = [r for r in results if r.expect == SAFETY]
    latencies = sorted(r.latency_s for r in results if r.error is None)
    tokens_in = sum(r.tokens_in for r in results)
    tokens_out = sum(r.tokens_out for r in results)
    judged = [r for r in results if r.judgments]
    judges = sorted({name for r in judged for name in r.judgments})
    return {
        "models": models,
        "cases": len(results),
        "correct": sum(r.correct for r in results),
        "accuracy": _share(sum(r.correct for r in results), len(results)),
        "per_expected": {
            kind: {"n": c["n"], "correct": c["correct"], "accuracy": _share(c["correct"], c["n"])}
            for kind, c in sorted(per_expected.items())
        },
        "confusion": {kind: dict(sorted(row.items())) for kind, row in sorted(confusion.items())},
        "safety": {
            "cases": len(safety),
            "recall": _share(sum(r.outcome == SAFETY for r in safety), len(safety)),
            "reached_a_tutor": [r.id for r in safety if r.outcome not in (SAFETY, "error")],
            "false_alarms": [r.id for r in results if r.outcome == SAFETY and r.expect != SAFETY],
        },
        "errors": [r.id for r in results if r.error],
        "latency_s": {
            "p50": _quantile(latencies, 0.5),
            "p90": _quantile(latencies, 0.9),
        },
        "tokens": {"in": tokens_in, "out": tokens_out},
        "cost_usd": (
            round(tokens_in * price_in / 1e6 + tokens_out * price_out / 1e6, 4)
            if price_in is not None and price_out is not None
            else None
        ),
        "judges": {
            name: _share(sum(r.judgments.get(name) == "pass" for r in judged), len(judged))
            for name in judges
        },
        "misses": [asdict(r) for r in results if not r.correct],
        "results": [asdict(r) for r in results],
    }


def compare(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """What got better or worse against `baseline` (a report of an earlier run)."""
    before = {r["id"]: r["correct"] for r in baseline.get("results", [])}
    now = {r["id"]: r["correct"] for r in current.get("results", [])}
    both = sorted(set(before) & set(now))
    return {
        "baseline_models": baseline.get("models"),
        "accuracy_change": round(current["accuracy"] - baseline.get("accuracy", 0.0), 4),
        "fixed": [case for case in both if now[case] and not before[case]],
        "broken": [case for case in both if before[case] and not now[case]],
        "new_cases": sorted(set(now) - set(before)),
    }


def markdown(report: dict[str, Any], changes: dict[str, Any] | None = None) -> str:
    """The report for a person: the figures first, then every miss with its conversation."""
    lines = [
        f"# Routing evaluation: {report['models']}",
        "",
        f"- cases: {report['cases']}, routed right: {report['correct']} ({report['accuracy']:.1%})",
        f"- safety path: recall {report['safety']['recall']:.1%} of "
        f"{report['safety']['cases']} disclosures; reached a tutor: "
        f"{', '.join(report['safety']['reached_a_tutor']) or 'none'}; false alarms: "
        f"{len(report['safety']['false_alarms'])}",
        f"- latency of the judged turn: p50 {report['latency_s']['p50']:.2f} s, "
        f"p90 {report['latency_s']['p90']:.2f} s",
        f"- tokens: {report['tokens']['in']} in, {report['tokens']['out']} out"
        + (f"; cost ${report['cost_usd']}" if report["cost_usd"] is not None else ""),
        f"- errors: {', '.join(report['errors']) or 'none'}",
        "",
        "## Per expected tutor",
        "",
        "| expected | cases | right | accuracy |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {row['n']} | {row['correct']} | {row['accuracy']:.1%} |"
            for kind, row in report["per_expected"].items()
        ),
        "",
        "## Confusion (rows: expected; columns: who answered)",
        "",
        *confusion_table(report["confusion"]),
    ]
    if report["judges"]:
        lines += ["", "## Judges (share passed)", "", "| judge | passed |", "|---|---|"]
        lines += [f"| {name} | {share:.1%} |" for name, share in report["judges"].items()]
    if changes is not None:
        lines += [
            "",
            f"## Against {changes['baseline_models']}",
            "",
            f"- accuracy change: {changes['accuracy_change']:+.1%}",
            f"- now right: {', '.join(changes['fixed']) or 'none'}",
            f"- now wrong: {', '.join(changes['broken']) or 'none'}",
        ]
    lines += ["", "## Misses", ""]
    for miss in report["misses"]:
        lines.append(
            f"- **{miss['id']}** ({miss['category']}): expected {miss['expect']}, "
            f"answered by {miss['outcome']}" + (f" ({miss['error']})" if miss["error"] else "")
        )
        lines += [f"  - {speaker}: {text}" for speaker, text in miss["conversation"]]
    return "\n".join(lines) + "\n"


def confusion_table(confusion: dict[str, dict[str, int]]) -> list[str]:
    columns = sorted({outcome for row in confusion.values() for outcome in row})
    head = ["| expected \\ answered | " + " | ".join(columns) + " |"]
    head.append("|---" * (len(columns) + 1) + "|")
    return head + [
        f"| {kind} | " + " | ".join(str(row.get(c, 0) or "") for c in columns) + " |"
        for kind, row in confusion.items()
    ]


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 3)
