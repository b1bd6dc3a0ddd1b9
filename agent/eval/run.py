"""Running the labelled set through the production job: each case is a tutor job in this
process (`agent.workers.job.local_job`: the same session, tutors, tools, roster and
instructions as a worker's, with no room) on the models under test; what the child would
have heard decides the outcome."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from livekit.agents import llm
from livekit.agents.metrics import AgentSessionUsage, LLMModelUsage

from agent.config.roster import ORCHESTRATOR, Roster
from agent.config.settings import Settings
from agent.conversation.state import TutorKind, TutorModels
from agent.dispatch.plan import DispatchPlan
from agent.eval.cases import SAFETY, Case
from agent.eval.judges import judge_answer
from agent.handover.protocol import Transfer
from agent.records.resume import Resumption
from agent.safety.lines import REDIRECT_LINE, SAFEGUARDING_LINE
from agent.safety.moderation import Direction, Verdict
from agent.workers.job import JobModels, JobWiring, local_job


class Moderates(Protocol):
    async def check(self, text: str, *, direction: Direction, retry: bool = False) -> Verdict: ...


@dataclass
class EvalModels:
    """The models under test: each tutor's chat model for a roster, and the moderator (None:
    moderation off, so no case can reach the safety path)."""

    name: str  # as the report names them
    tutors: Callable[[Roster], dict[TutorKind, TutorModels]]
    moderator: Moderates | None = None
    judge: llm.LLM | None = None  # grades the answers (None: routing only)
    _built: dict[int, dict[TutorKind, TutorModels]] = field(default_factory=dict, repr=False)

    def built(self, roster: Roster) -> dict[TutorKind, TutorModels]:
        """The tutors' models for `roster`, made on first use."""
        if id(roster) not in self._built:
            self._built[id(roster)] = self.tutors(roster)
        return self._built[id(roster)]


@dataclass
class CaseResult:
    id: str
    category: str
    says: str
    expect: str
    outcome: str  # the tutor that answered, or "safety"
    correct: bool
    tier: str | None = None  # the flag's, when the safety path was taken
    conversation: list[tuple[str, str]] = field(default_factory=list)  # what was said
    latency_s: float = 0.0  # from the child's words to the end of the reply
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None
    judgments: dict[str, str] = field(default_factory=dict)  # judge -> pass/fail/maybe

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def route_target(tool: str) -> TutorKind | None:
    """The tutor a routing tool hands the student to (None: not a routing tool)."""
    if tool == "route_back_to_orchestrator":
        return ORCHESTRATOR
    return tool.removeprefix("route_to_") if tool.startswith("route_to_") else None


def outcome_of(case: Case, events: Sequence[Any]) -> tuple[str, str | None]:
    """Who answered the child's words: `safety` when a flag put a fixed line in place of the
    reply, else the first tutor routed to, else the tutor that had the floor."""
    for event in events:
        item = getattr(event, "item", None)
        if isinstance(item, llm.ChatMessage) and item.role == "assistant":
            text = (item.text_content or "").strip()
            if text.startswith(SAFEGUARDING_LINE):
                return SAFETY, "urgent"
            if text == REDIRECT_LINE:
                return SAFETY, "concern"
    for event in events:
        item = getattr(event, "item", None)
        if isinstance(item, llm.FunctionCall) and (target := route_target(item.name)):
            return target, None
    return case.start, None


def earlier_turns(case: Case) -> Resumption | None:
    """The conversation before the child's words, as a resumed session carries it."""
    if not case.before:
        return None
    history = llm.ChatContext.empty()
    for turn in case.before:
        history.add_message(
            role="user" if turn.speaker == "student" else "assistant", content=turn.text
        )
    last_tutor = next((t.speaker for t in reversed(case.before) if t.speaker != "student"), None)
    return Resumption(Transfer.from_history(f"eval-{case.id}", history), last_tutor or case.start)


async def run_case(
    case: Case, settings: Settings, roster: Roster, models: EvalModels
) -> CaseResult:
    """One case through a tutor job of its own: the tutor with the floor opens (or welcomes
    the child back to the conversation so far), then hears the child's words. The models
    are the run's, built once per roster and shared by its cases (as a worker's prewarmed
    models are by its jobs)."""
    tutors = models.built(roster)
    wiring = JobWiring(
        models=JobModels(tutors, {"llm": tutors[case.start].llm}),
        roster=roster,
        worker="eval",
        moderator=models.moderator,  # type: ignore[arg-type]
    )
    resume = earlier_turns(case)
    plan = DispatchPlan(
        session_id=f"eval-{case.id}", student="student", tutor=None if resume else case.start
    )
    result = CaseResult(case.id, case.category, case.says, case.expect, "", False)
    try:
        async with local_job(
            settings, wiring, kind=case.start, plan=plan, resume=resume
        ) as session:
            started = time.monotonic()
            run = await session.run(user_input=case.says)
            result.latency_s = time.monotonic() - started
            result.outcome, result.tier = outcome_of(case, run.events)
            count_tokens(result, session.usage)
            result.conversation = [
                ("student" if item.role == "user" else "tutor", item.text_content or "")
                for item in session.history.items
                if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant")
            ]
            if models.judge is not None and result.outcome != SAFETY:
                result.judgments = await judge_answer(
                    models.judge, session.history, roster.tutor(result.outcome).teaching_style
                )
    except Exception as e:  # one broken case is a row of the report, not the end of the run
        result.error = f"{type(e).__name__}: {e}"
        result.outcome = "error"
    result.correct = result.outcome == case.expect
    return result


def count_tokens(result: CaseResult, usage: AgentSessionUsage) -> None:
    """The chat models' tokens of the whole case (the tutor's first reply included)."""
    for model in usage.model_usage:
        if isinstance(model, LLMModelUsage):
            result.tokens_in += model.input_tokens
            result.tokens_out += model.output_tokens


async def run_cases(
    cases: Sequence[Case],
    settings: Settings,
    rosters: dict[str, Roster],
    models: EvalModels,
    *,
    concurrency: int = 4,
    checkpoint: Path | None = None,
    progress: TextIO = sys.stderr,
) -> list[CaseResult]:
    """Every case, `concurrency` at a time, with a progress bar. With `checkpoint` (JSON
    lines), each result is kept as it comes and a run that stopped goes on where it was."""
    done = read_checkpoint(checkpoint) if checkpoint else {}
    pending = [case for case in cases if case.id not in done]
    results = {case_id: done[case_id] for case_id in (c.id for c in cases) if case_id in done}
    gate = asyncio.Semaphore(max(1, concurrency))
    bar = Progress(len(cases), len(results), progress)

    async def one(case: Case) -> None:
        async with gate:
            result = await run_case(case, settings, rosters[case.roster], models)
        results[case.id] = result
        if checkpoint is not None:
            with checkpoint.open("a", encoding="utf-8") as out:
                out.write(result.to_json() + "\n")
        bar.step(result.correct)

    await asyncio.gather(*(one(case) for case in pending))
    bar.close()
    return [results[case.id] for case in cases]


def read_checkpoint(path: Path) -> dict[str, CaseResult]:
    if not path.exists():
        return {}
    found: dict[str, CaseResult] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            data["conversation"] = [tuple(turn) for turn in data.get("conversation", [])]
            found[data["id"]] = CaseResult(**data)
    return found


@dataclass
class Progress:
    """`[#####     ] 120/243  misses 7` on one line of `out`."""

    total: int
    done: int
    out: TextIO
    misses: int = 0
    width: int = 30

    def step(self, correct: bool) -> None:
        self.done += 1
        self.misses += not correct
        filled = self.width * self.done // max(1, self.total)
        bar = "#" * filled + " " * (self.width - filled)
        self.out.write(f"\r[{bar}] {self.done}/{self.total}  misses {self.misses}")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()
