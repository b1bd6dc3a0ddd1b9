"""`python -m agent eval`: run the labelled set through the production tutors on the
configured models (or the offline fake) and write the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from agent.config.roster import (
    SHIPPED_ROSTER,
    Roster,
    RosterError,
    load_roster,
    parse_roster,
    roster_for,
)
from agent.config.settings import Settings, SettingsError, load_settings
from agent.conversation.state import TutorModels
from agent.eval.cases import DEFAULT_CASES, CasesError, load_cases
from agent.eval.fake import KeywordModerator, keyword_llm
from agent.eval.report import compare, markdown, summarise
from agent.eval.run import EvalModels, run_cases
from agent.workers.models import chat_llm, pipeline_tutor_models
from agent.workers.resources import build_moderator

ROSTERS = Path(__file__).resolve().parents[2] / "evals" / "rosters"
# the eval talks to no LiveKit server: these stand in when the environment has none
UNUSED = {"livekit_url": "ws://127.0.0.1:7880", "livekit_api_key": "unused"}

DESCRIPTION = """\
Run the labelled set (evals/routing.yaml) through the production tutors, routing and
moderation on the configured models (--models settings: the endpoints and models of .env
and the roster), or on the offline keyword fake (--models fake, no key needed). Writes
report.json, report.md and results.jsonl (resumable) to --out.

The report: routing accuracy overall and per expected tutor, the confusion table (who
answered what was meant for whom), every miss with its conversation, the safety path's
recall (disclosures that reached a tutor are listed), tokens, cost and latency per case,
and with --judge the judges' pass rates (accuracy, relevancy, safety, age-appropriateness,
teaching style as the roster asks)."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="measure routing, safety and answers on a labelled set",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="the labelled set")
    parser.add_argument(
        "--models",
        choices=("settings", "fake"),
        default="settings",
        help="the configured models (default) or the offline keyword fake",
    )
    parser.add_argument("--judge", metavar="MODEL", help="grade each answer with this chat model")
    parser.add_argument(
        "--out", type=Path, help="where the report goes (default: build/eval/<models>)"
    )
    parser.add_argument("--baseline", type=Path, help="an earlier report.json to compare with")
    parser.add_argument("--concurrency", type=int, default=4, help="cases at once (default 4)")
    parser.add_argument("--category", action="append", help="only these categories")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--fresh", action="store_true", help="ignore an earlier run's results")
    parser.add_argument("--price-in", type=float, help="US dollars per million input tokens")
    parser.add_argument("--price-out", type=float, help="US dollars per million output tokens")


def run(args: argparse.Namespace) -> int:
    try:
        settings = eval_settings(args.models)
        rosters = eval_rosters(settings, args.models)
        kinds = {name: set(roster.tutors) for name, roster in rosters.items()}
        cases = load_cases(args.cases, kinds=kinds)
    except (SettingsError, RosterError, CasesError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.category:
        cases = [case for case in cases if case.category in args.category]
    cases = cases[: args.limit] if args.limit else cases
    out: Path = args.out or Path("build") / "eval" / args.models
    out.mkdir(parents=True, exist_ok=True)
    # the tutors' own logs go to a file beside the report: the terminal shows the progress
    logging.basicConfig(filename=out / "eval.log", level=logging.INFO, force=True)
    checkpoint = out / "results.jsonl"
    if args.fresh:
        checkpoint.unlink(missing_ok=True)
    models = eval_models(settings, args.models, args.judge)
    results = asyncio.run(
        run_cases(
            cases, settings, rosters, models, concurrency=args.concurrency, checkpoint=checkpoint
        )
    )
    report = summarise(
        results, models=models.name, price_in=args.price_in, price_out=args.price_out
    )
    changes = None
    if args.baseline:
        changes = compare(report, json.loads(args.baseline.read_text(encoding="utf-8")))
        report["baseline"] = changes
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    (out / "report.md").write_text(markdown(report, changes), encoding="utf-8")
    print(
        f"{report['correct']}/{report['cases']} routed right ({report['accuracy']:.1%}), "
        f"safety recall {report['safety']['recall']:.1%}; report: {out / 'report.md'}"
    )
    return 0


def eval_settings(models: str) -> Settings:
    """The settings, with stand-ins for what the eval does not use (LiveKit, records) and,
    for the fake, for the model key."""
    overrides: dict[str, Any] = {"records_url": ""}
    for name, value in UNUSED.items():
        if not os.environ.get(name.upper()):
            overrides[name] = value
    if not os.environ.get("LIVEKIT_API_SECRET"):
        overrides["livekit_api_secret"] = "unused-" + "x" * 32
    if models == "fake" and not os.environ.get("OPENAI_API_KEY"):
        overrides["openai_api_key"] = "unused"
    return load_settings(**overrides)


def eval_rosters(settings: Settings, models: str) -> dict[str, Roster]:
    """The shipped roster ("") and each roster the set names: the shipped one with a school's
    added tutors (`evals/rosters/<name>.toml`)."""
    base = roster_for(settings) if models == "settings" else load_roster(SHIPPED_ROSTER)
    rosters = {"": base}
    for addition in sorted(ROSTERS.glob("*.toml")):
        text = SHIPPED_ROSTER.read_text(encoding="utf-8") + "\n" + addition.read_text("utf-8")
        rosters[addition.stem] = parse_roster(text, source=str(addition))
    return rosters


def eval_models(settings: Settings, models: str, judge: str | None) -> EvalModels:
    judge_llm = chat_llm(settings, judge) if judge else None
    if models == "fake":
        return EvalModels(
            name="fake (offline keyword router)",
            tutors=lambda roster: {
                kind: TutorModels(llm=keyword_llm(kind)) for kind in roster.tutors
            },
            moderator=KeywordModerator(),
            judge=judge_llm,
        )
    return EvalModels(
        name=f"configured models ({settings.openai_base_url or 'OpenAI'})",
        tutors=lambda roster: pipeline_tutor_models(settings, roster),
        moderator=build_moderator(settings),
        judge=judge_llm,
    )
