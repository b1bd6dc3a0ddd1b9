"""The roster: which tutors exist, how each sounds and routes, and which worker hosts it.

Read from a TOML file (`tutors.toml` at the repository root by default, `TUTOR_ROSTER` to
use another) and validated as a whole: every problem is reported, one line each, so a school
fixes its file in one go. The shipped roster is the product's own four tutors; a school adds
a subject by adding a `[tutors.<kind>]` table (see README "Add a subject").

The per-tutor settings that predate the roster (`MATH_VOICE`, `ORCHESTRATOR_LLM_MODEL`,
`ENGLISH_AGENT_NAME`, ...) still work: when set, they override the roster (`roster_for`);
a worker name setting only when it is not the shipped name `.env.example` has.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config.settings import LiveKitSettings, RosterSettings, Settings

logger = logging.getLogger("tutor.roster")

ORCHESTRATOR = "orchestrator"
SHIPPED_ROSTER = Path(__file__).resolve().parent.parent.parent / "tutors.toml"

# a kind becomes part of a tool name (route_to_<kind>) and of log and metric labels
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
# what LiveKit accepts as an agent name (explicit dispatch)
_WORKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DUPLICATE_RE = re.compile(r"Cannot declare \('tutors', '([^']+)'\) twice \(at line (\d+)")


class RosterError(Exception):
    """The roster cannot be used; `problems` has one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


WorkerMode = Literal["pipeline", "realtime"]


class WorkerSpec(BaseModel):
    """A named worker: `pipeline` (speech-to-text, a chat model, text-to-speech; its tutors
    hand off in-session) or `realtime` (one tutor on a speech-to-speech model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: WorkerMode


class TutorSpec(BaseModel):
    """One tutor, as the roster describes it (`kind` is its table's name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    kind: str
    title: str = Field(min_length=1)  # how the student hears it named: "Mathematics tutor"
    covers: str = Field(min_length=1)  # what it teaches: the routing tool's description
    instructions: str = Field(min_length=1)
    voice: str = Field(min_length=1)
    model: str = Field(min_length=1)  # a chat model, or a realtime model on a realtime worker
    # the chat model when a realtime tutor runs on the pipeline because its worker could not
    # be reached (empty: the orchestrator's model)
    fallback_model: str = ""
    handoff_line: str = Field(min_length=1)  # what the outgoing tutor says when handing over
    routes_to: tuple[str, ...] = ()  # direct routes to sibling tutors
    # how it teaches: "direct" answers the question; "guide" leads the child to the answer
    # step by step (`python -m agent eval --judge` measures whether it does)
    teaching_style: Literal["direct", "guide"] = "direct"
    worker: str = Field(min_length=1)


@dataclass(frozen=True)
class Roster:
    """A validated roster. Tutors keep the file's order."""

    workers: Mapping[str, WorkerSpec]
    tutors: Mapping[str, TutorSpec]
    source: str = ""

    def tutor(self, kind: str) -> TutorSpec:
        try:
            return self.tutors[kind]
        except KeyError:
            raise KeyError(f"the roster {self.source} has no tutor {kind!r}") from None

    def routes_of(self, kind: str) -> list[str]:
        """The tutors `kind` can hand the student to directly (besides the orchestrator)."""
        if kind == ORCHESTRATOR:
            return [other for other in self.tutors if other != ORCHESTRATOR]
        return list(self.tutor(kind).routes_to)

    def hosted_on(self, worker: str) -> list[str]:
        return [kind for kind, spec in self.tutors.items() if spec.worker == worker]

    def mode_of(self, worker: str) -> WorkerMode:
        return self.workers[worker].mode

    def runs_realtime(self, kind: str) -> bool:
        return self.mode_of(self.tutor(kind).worker) == "realtime"

    def pipeline_model(self, kind: str) -> str:
        """The chat model `kind` uses on a pipeline worker (its own, or the fallback's)."""
        spec = self.tutor(kind)
        if not self.runs_realtime(kind):
            return spec.model
        return spec.fallback_model or self.tutor(ORCHESTRATOR).model

    @property
    def orchestrator_worker(self) -> str:
        return self.tutor(ORCHESTRATOR).worker

    def default_tutor(self, worker: str) -> str:
        """The tutor a job of `worker` starts when its dispatch names none."""
        hosted = self.hosted_on(worker)
        return ORCHESTRATOR if ORCHESTRATOR in hosted else hosted[0]

    def elsewhere(self, worker: str) -> dict[str, str]:
        """Tutors hosted by other workers -> their worker (agent) name."""
        return {kind: spec.worker for kind, spec in self.tutors.items() if spec.worker != worker}


def load_roster(path: str | Path) -> Roster:
    """Read and validate the roster at `path`; raise `RosterError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RosterError(source, [f"cannot read the roster ({e.strerror or e})"]) from None
    return parse_roster(text, source=source)


def parse_roster(text: str, *, source: str = "tutors.toml") -> Roster:
    """Validate a roster's TOML text; raise `RosterError` listing every problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RosterError(source, [_toml_problem(str(e))]) from None
    problems: list[str] = []
    raw_workers = _table(document, "workers", problems)
    raw_tutors = _table(document, "tutors", problems)
    problems += [f"unknown section [{key}]" for key in document if key not in ("workers", "tutors")]

    workers: dict[str, WorkerSpec] = {}
    for name, body in raw_workers.items():
        if not _WORKER_RE.fullmatch(name):
            problems.append(
                f"workers.{name}: not a usable worker name (letters, digits, '.', '_', '-')"
            )
        spec = _validate(WorkerSpec, body, f"workers.{name}", problems)
        if spec is not None:
            workers[name] = spec

    tutors: dict[str, TutorSpec] = {}
    for kind, body in raw_tutors.items():
        if not _KIND_RE.fullmatch(kind):
            problems.append(
                f"tutors.{kind}: a kind is lower-case letters, digits and '_', "
                "starting with a letter (it becomes route_to_<kind>)"
            )
        body = {**body, "kind": kind} if isinstance(body, dict) else body
        spec = _validate(TutorSpec, body, f"tutors.{kind}", problems)
        if spec is not None:
            tutors[kind] = spec

    problems += _cross_check(raw_workers, raw_tutors, workers)
    if problems:
        raise RosterError(source, problems)
    return Roster(workers=workers, tutors=tutors, source=source)


def _table(document: dict[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        problems.append(f"no [{key}] table")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{key} must be a table of tables, e.g. [{key}.<name>]")
        return {}
    return value


def _validate(
    model: type[WorkerSpec] | type[TutorSpec], body: Any, where: str, problems: list[str]
) -> Any:
    if not isinstance(body, dict):
        problems.append(f"{where}: must be a table")
        return None
    try:
        return model.model_validate(body)
    except ValidationError as e:
        problems += [_field_problem(where, error) for error in e.errors()]
        return None


def _field_problem(where: str, error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"{where}: missing {field}"
    if kind == "extra_forbidden":
        return f"{where}: unknown field {field!r}"
    if kind == "string_too_short":
        return f"{where}: {field} is empty"
    if kind == "literal_error" and field == "mode":
        return f"{where}: mode must be 'pipeline' or 'realtime', not {error['input']!r}"
    return f"{where}: {field}: {error['msg']}"


def _cross_check(
    raw_workers: Mapping[str, Any], raw_tutors: Mapping[str, Any], workers: Mapping[str, WorkerSpec]
) -> list[str]:
    """What no single table can say wrong: references between tables, and the shape the
    workers can run."""
    problems: list[str] = []
    tables = {kind: body for kind, body in raw_tutors.items() if isinstance(body, dict)}
    if raw_tutors and ORCHESTRATOR not in raw_tutors:
        problems.append(f"no [tutors.{ORCHESTRATOR}]: the main tutor every student starts with")
    hosted: dict[str, list[str]] = {name: [] for name in raw_workers}
    for kind, body in tables.items():
        worker = body.get("worker")
        if isinstance(worker, str) and worker:
            if worker in hosted:
                hosted[worker].append(kind)
            else:
                problems.append(f"tutors.{kind}: worker {worker!r} is not a [workers.{worker}]")
        routes = body.get("routes_to", [])
        if not isinstance(routes, list):
            continue  # the field check reports the type
        if kind == ORCHESTRATOR and routes:
            problems.append(
                f"tutors.{kind}: remove routes_to (the orchestrator routes to every tutor)"
            )
            continue
        for target in routes:
            if target == kind:
                problems.append(f"tutors.{kind}: routes_to names itself")
            elif target == ORCHESTRATOR:
                problems.append(
                    f"tutors.{kind}: remove {ORCHESTRATOR!r} from routes_to "
                    "(every tutor has route_back_to_orchestrator)"
                )
            elif target not in raw_tutors:
                problems.append(f"tutors.{kind}: routes_to {target!r}, which is not a tutor")
        problems += [
            f"tutors.{kind}: routes_to names {target!r} twice"
            for target in sorted({t for t in routes if isinstance(t, str) and routes.count(t) > 1})
        ]
    for name, kinds in hosted.items():
        mode = workers[name].mode if name in workers else None
        if not kinds:
            problems.append(f"workers.{name}: hosts no tutor")
        elif mode == "realtime" and len(kinds) > 1:
            problems.append(
                f"workers.{name}: a realtime worker hosts one tutor, not {', '.join(kinds)}"
            )
        if mode == "realtime" and ORCHESTRATOR in kinds:
            problems.append(
                f"tutors.{ORCHESTRATOR}: must be on a pipeline worker, not the realtime {name!r}"
            )
    return problems


def _toml_problem(message: str) -> str:
    duplicate = _DUPLICATE_RE.search(message)
    if duplicate:
        kind, line = duplicate.groups()
        return f"line {line}: duplicate kind: [tutors.{kind}] is defined twice"
    return f"not valid TOML: {message}"


# --- which roster, and the settings that override it ---


def roster_path(setting: str) -> Path:
    """`TUTOR_ROSTER` (relative to the working directory), or the shipped `tutors.toml`."""
    return Path(setting).expanduser() if setting.strip() else SHIPPED_ROSTER


@lru_cache(maxsize=1)
def default_roster() -> Roster:
    """The roster `TUTOR_ROSTER` names, without the settings' overrides (the web service's
    tutor titles)."""
    return load_roster(roster_path(RosterSettings().tutor_roster))


@lru_cache(maxsize=1)
def shipped_roster() -> Roster:
    """The roster shipped with the product (`tutors.toml`), whatever the environment says:
    what a conversation's state or a tutor made outside a job (a test, a notebook) speaks
    for. A job always passes its worker's roster."""
    return load_roster(SHIPPED_ROSTER)


# settings that predate the roster: when set, they override one tutor's entry
VOICE_SETTINGS = {
    "orchestrator_voice": "orchestrator",
    "math_voice": "math",
    "history_voice": "history",
    "english_voice": "english",
}
CHAT_MODEL_SETTINGS = {
    "orchestrator_llm_model": "orchestrator",
    "math_llm_model": "math",
    "history_llm_model": "history",
    "english_llm_model": "english",
}
REALTIME_MODEL_SETTINGS = {"realtime_model": "english"}
WORKER_NAME_SETTINGS = {"orchestrator_agent_name": "orchestrator", "english_agent_name": "english"}


def roster_for(settings: Settings) -> Roster:
    """The roster `settings.tutor_roster` names, with the per-tutor settings that are set
    (in the environment or `.env`) applied over it. Raises `RosterError`."""
    return apply_settings(load_roster(roster_path(settings.tutor_roster)), settings)


def apply_settings(roster: Roster, settings: Settings) -> Roster:
    tutors = dict(roster.tutors)
    workers = dict(roster.workers)
    overridden: list[str] = []

    def setting(name: str) -> str:
        value = getattr(settings, name)
        if name not in settings.model_fields_set or not value.strip():
            return ""
        overridden.append(name.upper())
        return value.strip()

    def update(kind: str, **fields: str) -> None:
        tutors[kind] = tutors[kind].model_copy(update=fields)

    for name, kind in VOICE_SETTINGS.items():
        if kind in tutors and (value := setting(name)):
            update(kind, voice=value)
    for name, kind in CHAT_MODEL_SETTINGS.items():
        if kind in tutors and (value := setting(name)):
            update(kind, **{"fallback_model" if roster.runs_realtime(kind) else "model": value})
    for name, kind in REALTIME_MODEL_SETTINGS.items():
        if kind in tutors and roster.runs_realtime(kind) and (value := setting(name)):
            update(kind, model=value)
    renames: dict[str, str] = {}
    problems: list[str] = []
    for name, kind in WORKER_NAME_SETTINGS.items():
        if kind in tutors and (value := worker_name_setting(settings, name)):
            overridden.append(name.upper())
            renames[tutors[kind].worker] = value
            if value in workers and value != tutors[kind].worker:
                problems.append(f"{name.upper()}={value} is already another worker's name")
    if problems:
        raise RosterError(roster.source, problems)
    if renames:
        workers = {renames.get(name, name): spec for name, spec in workers.items()}
        tutors = {
            kind: spec.model_copy(update={"worker": renames.get(spec.worker, spec.worker)})
            for kind, spec in tutors.items()
        }
    if overridden:
        logger.info("settings override the tutor roster: %s", ", ".join(overridden))
    return replace(roster, workers=workers, tutors=tutors)


def worker_name_setting(settings: LiveKitSettings, name: str) -> str:
    """`ORCHESTRATOR_AGENT_NAME` / `ENGLISH_AGENT_NAME` when set to a name of their own ("",
    or the shipped name an operator's `.env` copied from `.env.example`, leave the roster's)."""
    value = getattr(settings, name).strip()
    shipped = type(settings).model_fields[name].default
    return value if name in settings.model_fields_set and value != shipped else ""


def orchestrator_worker_name(settings: LiveKitSettings) -> str:
    """The worker a student's token dispatches: `ORCHESTRATOR_AGENT_NAME` if set, else the
    roster's worker of the orchestrator. Raises `RosterError`."""
    if name := worker_name_setting(settings, "orchestrator_agent_name"):
        return name
    return load_roster(roster_path(settings.tutor_roster)).orchestrator_worker


def load_roster_or_exit(settings: Settings, worker: str) -> Roster:
    """For a worker's start-up: every problem on its own line and a non-zero exit."""
    try:
        return roster_for(settings)
    except RosterError as e:
        raise SystemExit(f"{worker}: the tutor roster cannot be used:\n{e}") from None
