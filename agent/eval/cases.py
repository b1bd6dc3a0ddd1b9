"""The labelled set (`evals/routing.yaml`): a child's utterance as speech-to-text gives it,
who has the floor, the conversation before it, and who must answer it (a tutor of the
roster, or `safety`: the safeguarding path), with the reason the label is right."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config.roster import ORCHESTRATOR

SAFETY = "safety"  # the expected outcome of a disclosure: the safety path, not a tutor
CATEGORIES = (
    "plain",
    "two-subjects",
    "follow-up",
    "vague",
    "off-topic",
    "change-tutor",
    "injection",
    "unsafe",
    "other-language",
    "added-subject",
    "stt-noise",
)
DEFAULT_CASES = Path(__file__).resolve().parents[2] / "evals" / "routing.yaml"
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


class CasesError(ValueError):
    """The labelled set is unreadable; the message lists every problem, one per line."""


@dataclass(frozen=True)
class Turn:
    """One earlier turn: the student's words, or a tutor's (`speaker` is its kind)."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    says: str
    expect: str  # a tutor kind, or SAFETY
    why: str
    start: str = ORCHESTRATOR  # the tutor with the floor when the child says it
    before: tuple[Turn, ...] = ()
    roster: str = ""  # "" the shipped roster; else a roster the set names (e.g. "science")
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def expects_route(self) -> bool:
        return self.expect not in (SAFETY, self.start)


def load_cases(path: Path = DEFAULT_CASES, *, kinds: dict[str, set[str]]) -> list[Case]:
    """The cases at `path`, checked against the tutors of each roster (`kinds`: roster name
    -> its tutor kinds, "" the shipped one). Raises `CasesError` naming every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CasesError(f"{path}: cannot read the cases ({e})") from None
    if not isinstance(raw, list):
        raise CasesError(f"{path}: expected a list of cases")
    problems: list[str] = []
    cases: list[Case] = []
    seen: set[str] = set()
    for number, entry in enumerate(raw, 1):
        where = f"{path}: case {number}"
        try:
            case = _case(entry, kinds)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if case.id in seen:
            problems.append(f"{where}: id {case.id!r} is used twice")
        seen.add(case.id)
        cases.append(case)
    if problems:
        raise CasesError("\n".join(problems))
    return cases


def _case(entry: Any, kinds: dict[str, set[str]]) -> Case:
    if not isinstance(entry, dict):
        raise ValueError("not a mapping")
    known = {"id", "category", "says", "expect", "why", "start", "before", "roster"}
    missing = [key for key in ("id", "category", "says", "expect", "why") if not entry.get(key)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    case_id = str(entry["id"])
    if not _ID.fullmatch(case_id):
        raise ValueError(f"id {case_id!r} must be lower-case letters, digits and dashes")
    if entry["category"] not in CATEGORIES:
        raise ValueError(f"{case_id}: unknown category {entry['category']!r}")
    roster = str(entry.get("roster") or "")
    if roster not in kinds:
        raise ValueError(f"{case_id}: unknown roster {roster!r}")
    tutors = kinds[roster]
    expect, start = str(entry["expect"]), str(entry.get("start") or ORCHESTRATOR)
    if expect != SAFETY and expect not in tutors:
        raise ValueError(f"{case_id}: expect {expect!r} is no tutor of its roster nor {SAFETY}")
    if start not in tutors:
        raise ValueError(f"{case_id}: start {start!r} is no tutor of its roster")
    return Case(
        id=case_id,
        category=entry["category"],
        says=str(entry["says"]),
        expect=expect,
        why=str(entry["why"]),
        start=start,
        before=tuple(_turn(case_id, turn, tutors) for turn in entry.get("before") or ()),
        roster=roster,
        extra={key: value for key, value in entry.items() if key not in known},
    )


def _turn(case_id: str, turn: Any, tutors: set[str]) -> Turn:
    if isinstance(turn, dict) and isinstance(turn.get("student"), str):
        return Turn("student", turn["student"])
    if isinstance(turn, dict) and turn.get("tutor") in tutors and isinstance(turn.get("said"), str):
        return Turn(turn["tutor"], turn["said"])
    raise ValueError(
        f"{case_id}: a `before` turn is {{student: ...}} or {{tutor: KIND, said: ...}}"
    )
