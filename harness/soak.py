"""The soak's engine: randomized conversations through both real job bodies with faults
injected into dispatch, and the invariants each must keep (`python -m bench soak` reports
it; `tests/wire/test_soak.py` proves its invariants catch what they name).

Each conversation runs through both real job bodies (`harness.fakes.cluster.Cluster`, both
workers in one process on an in-memory room), the real tutors on scripted models that behave
like sane ones (`Brain`), and the real dispatch client (`agent.dispatch.client.Dispatcher`) talking
to the local Twirp server (`harness.fakes.twirp.TwirpDispatchServer`) over loopback HTTP. The
server starts the job of every dispatch it creates, as LiveKit would. Faults, decided per
request by a per-room seeded RNG: CreateDispatch answered 5xx, hanging past the attempt
timeout, or the connection reset; and incoming tutors that never come up.

Invariants, checked for every conversation (`INVARIANTS`):

- answered: every question is answered once, by the right tutor, or by the documented
  fallback (English not ready: the pipeline English tutor in the orchestrator's session;
  orchestrator not ready on the way back: English stays and says `STAY_LINE`);
- one_speaker: never two speakers (and no agent speaks while another that spoke is present);
- no_idle_agent: at the end exactly one agent is in the room, the active tutor's;
- one_dispatch: one dispatch per completed handover, none left by a handover that fell back;
- no_exception: nothing raised in jobs, turns, tasks, or logged with a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

from livekit.protocol.agent_dispatch import AgentDispatch, CreateAgentDispatchRequest

from agent.config.settings import Settings, load_settings
from agent.dispatch.client import DispatchPolicy
from agent.dispatch.metadata import dispatch_metadata, parse_dispatch_metadata
from agent.handover.outgoing import STAY_LINE
from agent.handover.protocol import HandoverResult, Outcome
from harness.fakes.cluster import ORCHESTRATOR_WORKER, Cluster, Job
from harness.fakes.llm import Reply, Request, call, say
from harness.fakes.room import RoomHub
from harness.fakes.twirp import TwirpDispatchServer

Topic = Literal["math", "history", "english", "smalltalk", "goodbye"]

QUESTIONS: dict[Topic, tuple[str, ...]] = {
    "math": (
        "What is 7 times 8?",
        "Was ist 3:4 | 5? Élan café 北京",
        "How do I add 1/2 and 1/3?",
        "Combien font 12 : 4 ?",
        "What is 15% of 80 | roughly?",
    ),
    "history": (
        "Who was Napoleon?",
        "When was the Great Wall (万里长城) built?",
        "Qui était Jeanne d'Arc | Orléans: 1429?",
        "Why did the Roman Empire fall?",
    ),
    "english": (
        "What is a noun?",
        "Their or there: which one | when?",
        "How do you spell 'café' in English?",
        "Is 'went' the past of 'go'? Straße: ß | ü",
    ),
    "smalltalk": (
        "How are you today?",
        "I like pizza 🍕 | do you?",
        "Are you a robot: yes or no?",
    ),
    "goodbye": ("Goodbye!", "Bye, thanks: see you | later 👋", "Tschüss, à bientôt!"),
}
TOPIC_WEIGHTS: dict[Topic, int] = {"math": 3, "history": 2, "english": 4, "smalltalk": 2}
ROUTE_TOOLS: dict[Topic, str] = {
    "math": "route_to_math",
    "history": "route_to_history",
    "english": "route_to_english",
}
# what each scripted model answers itself (the orchestrator: everything it does not route)
OWN_TOPIC: dict[str, Topic | None] = {
    "orchestrator": None,
    "math": "math",
    "history": "history",
    "english": "english",
    "english_rt": "english",
}
LLM_NAMES = tuple(OWN_TOPIC)
# who answers a topic in the orchestrator's session (English: the pipeline fallback tutor)
IN_SESSION_TUTOR: dict[Topic, str] = {"math": "math", "history": "history", "english": "english"}
STAY = "stay"  # the tag of `STAY_LINE`
INVARIANTS = ("answered", "one_speaker", "no_idle_agent", "one_dispatch", "no_exception")
FELL_BACK = (Outcome.NOT_READY, Outcome.DISPATCH_FAILED)
NOT_ATTEMPTS = ("found_existing", "list_failed")  # logged by the client, but no CreateDispatch
_TAG = re.compile(r"^\[(\w+)\] ")


# the conversations


@dataclass(frozen=True)
class Turn:
    text: str
    topic: Topic


def plan_conversation(rng: random.Random, index: int, min_turns: int, max_turns: int) -> list[Turn]:
    """2-6 student turns of random topics, each text unique; maybe a goodbye at the end."""
    count = rng.randint(min_turns, max_turns)
    topics: list[Topic] = rng.choices(list(TOPIC_WEIGHTS), list(TOPIC_WEIGHTS.values()), k=count)
    if rng.random() < 0.4:
        topics[-1] = "goodbye"
    return [
        Turn(f"{rng.choice(QUESTIONS[topic])} (#{index}.{number})", topic)
        for number, topic in enumerate(topics, 1)
    ]


# the models


@dataclass
class Brain:
    """What every scripted model knows: each question's topic (a sane model's understanding).

    Each tutor answers its own subject with `[<llm name>] <the question>` (so the answer shows
    who answered and that the question arrived intact) and routes anything else: the
    orchestrator to the subject's tutor, Math and History to each other, everything else
    back to the orchestrator.
    """

    topics: dict[str, Topic] = field(default_factory=dict)

    def learn(self, turns: list[Turn]) -> None:
        self.topics.update((turn.text, turn.topic) for turn in turns)

    def forget(self, turns: list[Turn]) -> None:
        for turn in turns:
            self.topics.pop(turn.text, None)

    def scripts(self) -> dict[str, Callable[[Request], Reply]]:
        return {name: partial(self.reply, name) for name in LLM_NAMES}

    def reply(self, name: str, request: Request) -> Reply:
        questions = request.texts(role="user")
        if not questions:
            return say(f"[{name}] Hello! What would you like to learn?")
        text = questions[-1]
        topic = self.topics.get(text, "smalltalk")
        if topic == OWN_TOPIC[name] or (name == "orchestrator" and topic not in ROUTE_TOOLS):
            return say(f"[{name}] Here is my answer to: {text}")
        tool = ROUTE_TOOLS.get(topic)
        if tool is not None and tool in request.tool_names:
            return call(tool, question_summary=text)
        return call("route_back_to_orchestrator", reason=text)


@dataclass(frozen=True)
class Expected:
    """Who answers a question asked of the tutor holding the floor."""

    answerer: str  # without a crossing, or once the crossing completed
    crossing: str | None = None  # the tutor on the other worker, if the question crosses
    fallback: str = ""  # who answers if the crossing falls back


def expect(floor: str, topic: Topic) -> Expected:
    in_session = IN_SESSION_TUTOR.get(topic, "orchestrator")
    if floor == "english_rt":
        if topic == "english":
            return Expected("english_rt")
        return Expected(in_session, crossing="orchestrator", fallback=STAY)
    if topic == "english" and floor != "english":
        return Expected("english_rt", crossing="english", fallback="english")
    return Expected(in_session)


# configuration and results


@dataclass(frozen=True)
class FaultRates:
    server_error: float = 0.10  # CreateDispatch answered 500, nothing created
    hang: float = 0.05  # created, then no answer past the attempt timeout
    reset: float = 0.02  # connection reset before an answer, nothing created
    unready: float = 0.05  # a created dispatch whose job never comes up


# short timeouts, so that a thousand conversations with faults take a minute or two
SOAK_POLICY = DispatchPolicy(attempt_timeout=0.2, max_attempts=3, backoff_base=0.02)


@dataclass(frozen=True)
class SoakConfig:
    """How many conversations, how faulty the dispatch API, how patient the checks."""

    faults: FaultRates = FaultRates()
    conversations: int = 1000
    seed: int = 1
    concurrency: int = 8
    min_turns: int = 2
    max_turns: int = 6
    ready_timeout: float = 0.5
    policy: DispatchPolicy = SOAK_POLICY
    # from a dispatch created to its job starting (assignment, connect), drawn per dispatch;
    # above attempt timeout + backoff, a retry can come before the incoming tutor is ready
    job_start: tuple[float, float] = (0.1, 0.35)
    turn_timeout: float = 10.0  # for the answer to arrive
    settle_timeout: float = 3.0  # for handovers, joins and leaves to finish after a turn

    def slowed(self, factor: float) -> SoakConfig:
        """Every protocol time (timeouts, backoff, job start) times `factor`: the same
        races, with more room for a busy machine."""
        policy = self.policy
        return replace(
            self,
            ready_timeout=self.ready_timeout * factor,
            policy=replace(
                policy,
                attempt_timeout=policy.attempt_timeout * factor,
                backoff_base=policy.backoff_base * factor,
                backoff_max=policy.backoff_max * factor,
            ),
            job_start=(self.job_start[0] * factor, self.job_start[1] * factor),
        )


@dataclass
class SoakResult:
    conversations: int = 0
    turns: int = 0
    in_session_handoffs: int = 0
    crossings: Counter[str] = field(default_factory=Counter)  # by outcome
    faults: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)  # client attempts by outcome
    create_calls: int = 0
    delete_calls: int = 0
    violations: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(INVARIANTS, 0)))
    details: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    leftover_tasks: int = 0
    wall: float = 0.0

    @property
    def violated(self) -> bool:
        return any(self.violations.values())

    @property
    def crossings_completed(self) -> int:
        return self.crossings[Outcome.HANDED_OVER.value]

    @property
    def crossings_fell_back(self) -> int:
        return sum(self.crossings[o.value] for o in FELL_BACK)

    def violate(self, invariant: str, detail: str, where: str) -> None:
        self.violations[invariant] += 1
        self.details[f"{invariant}: {detail}"] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {invariant}: {detail}")


# what the run observes besides the conversations: dispatch logs, errors, loop exceptions


class Tap(logging.Handler):
    """Counts the dispatch client's attempts and keeps errors logged with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.attempts: Counter[str] = Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        outcome = getattr(record, "outcome", None)
        if record.name == "tutor.dispatch" and hasattr(record, "attempt") and outcome:
            retry = "retry" if record.attempt > 1 else "first"  # type: ignore[attr-defined]
            self.attempts[f"{outcome}:{retry}"] += 1
        if record.levelno >= logging.ERROR and record.exc_info:
            self.errors.append(f"{record.name}: {record.getMessage()}")

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        where = context.get("task") or context.get("future") or context.get("handle") or ""
        self.errors.append(f"asyncio: {context.get('message')} {error!r} {where!r}"[:500])


@contextmanager
def tapped(loop: asyncio.AbstractEventLoop) -> Iterator[Tap]:
    tap = Tap()
    root, dispatch_logger = logging.getLogger(), logging.getLogger("tutor.dispatch")
    level = dispatch_logger.level
    root.addHandler(tap)
    dispatch_logger.setLevel(logging.INFO)
    previous = loop.get_exception_handler()
    loop.set_exception_handler(tap.loop_exception)
    try:
        yield tap
    finally:
        loop.set_exception_handler(previous)
        dispatch_logger.setLevel(level)
        root.removeHandler(tap)


# one conversation


@dataclass
class Answer:
    job: Job
    tag: str


@dataclass
class Conversation:
    index: int
    turns: list[Turn]
    cluster: Cluster
    rng: random.Random  # faults of this room
    config: SoakConfig
    result: SoakResult
    server: TwirpDispatchServer
    floor: str = "orchestrator"  # the LLM name of the tutor holding the floor
    active: Job | None = None
    completed: int = 0  # crossings handed over

    @property
    def room(self) -> str:
        return self.cluster.room_name

    def violate(self, invariant: str, detail: str) -> None:
        self.result.violate(invariant, detail, self.room)

    # the server's side: faults and jobs for dispatches

    def create_fault(self, request: CreateAgentDispatchRequest) -> str | None:
        rates, draw = self.config.faults, self.rng.random()
        for fault, rate in (("500", rates.server_error), ("hang", rates.hang)):
            if draw < rate:
                return fault
            draw -= rate
        return "reset" if draw < rates.reset else None

    def on_create(self, dispatch: AgentDispatch) -> None:
        if self.rng.random() < self.config.faults.unready:
            self.result.faults["unready"] += 1
            return
        delay = self.rng.uniform(*self.config.job_start)
        self.cluster.admit(dispatch.agent_name, dispatch.metadata, delay=delay)

    # bookkeeping over every job of the room

    def results(self) -> list[HandoverResult]:
        return [r for job in self.cluster.jobs for r in crossing_results(job)]

    def answers(self, text: str, said_before: dict[int, int]) -> list[Answer]:
        found: list[Answer] = []
        for job in self.cluster.jobs:
            for line in job.said[said_before.get(id(job), 0) :]:
                if text in line and (tag := _TAG.match(line)):
                    found.append(Answer(job, tag.group(1)))
                elif line == STAY_LINE and job is self.active:
                    found.append(Answer(job, STAY))
        return found

    def settled(self) -> bool:
        jobs = self.cluster.jobs
        starting = self.cluster.pending_starts or any(
            j.session is None and j.error is None for j in jobs
        )
        leaving = any(j.end_reason and not j.ended.is_set() for j in jobs)
        return not starting and not leaving and len(self.cluster.hub.present()) == 1

    async def settle(self) -> bool:
        """Wait for handovers in flight, and for jobs to finish starting or leaving."""
        try:
            async with asyncio.timeout(self.config.settle_timeout):
                for job in list(self.cluster.jobs):
                    if job.session is not None and job.session.userdata.crossing is not None:
                        await job.session.userdata.crossing.wait_idle()
                await self.cluster.until(self.settled, timeout=self.config.settle_timeout)
        except TimeoutError:
            return False
        return True

    # the conversation

    async def run(self) -> None:
        metadata = dispatch_metadata(session=f"soak-{self.index}", student=f"kid-{self.index}")
        self.active = await self.cluster.start_job(ORCHESTRATOR_WORKER, metadata)
        await self.cluster.until(self.active.spoke.is_set, timeout=self.config.turn_timeout)
        for turn in self.turns:
            await self.turn(turn)
        if not await self.settle():
            self.violate("no_idle_agent", "room did not settle at the end")
        self.check_end()

    async def turn(self, turn: Turn) -> None:
        assert self.active is not None
        said_before = {id(job): len(job.said) for job in self.cluster.jobs}
        results_before = len(self.results())
        loop = asyncio.get_running_loop()
        started = loop.time()
        run = asyncio.create_task(self.say(self.active, turn.text))
        try:
            await self.cluster.until(
                lambda: bool(self.answers(turn.text, said_before)),
                timeout=self.config.turn_timeout,
            )
            latency: float | None = loop.time() - started
        except TimeoutError:
            latency = None
        await run
        if not await self.settle():
            self.violate("no_idle_agent", "room did not settle after a turn")
        new = self.results()[results_before:]
        self.result.turns += 1
        self.judge(turn, new, self.answers(turn.text, said_before), latency)

    async def say(self, job: Job, text: str) -> None:
        """The student's turn, in the session of the tutor that holds the floor."""
        assert job.session is not None
        try:
            async with asyncio.timeout(self.config.turn_timeout):
                await job.session.run(user_input=text)
        except Exception as e:
            self.violate("no_exception", f"student turn raised {type(e).__name__}: {e}")

    def judge(
        self, turn: Turn, new: list[HandoverResult], answers: list[Answer], latency: float | None
    ) -> None:
        expected = expect(self.floor, turn.topic)
        for result in new:
            self.result.crossings[result.outcome.value] += 1
        self.completed += sum(r.outcome is Outcome.HANDED_OVER for r in new)
        answerer = expected.answerer
        if len(new) != (expected.crossing is not None):
            where = expected.crossing or "none"
            self.violate("answered", f"{len(new)} crossings where {where} expected")
        elif new and new[0].outcome is not Outcome.HANDED_OVER:
            answerer = expected.fallback
        kind = "in_session" if not new else new[0].outcome.value
        if len(answers) != 1:
            self.violate("answered", f"{len(answers)} answers to a {turn.topic} question")
        elif answers[0].tag != answerer:
            self.violate("answered", f"{turn.topic} answered by {answers[0].tag}, not {answerer}")
        elif latency is not None:
            self.result.latencies.setdefault(kind, []).append(latency)
        if answers:
            self.active = answers[-1].job
            self.floor = self.floor if answers[-1].tag == STAY else answers[-1].tag

    # the end

    def check_end(self) -> None:
        cluster, active = self.cluster, self.active
        assert active is not None
        present = cluster.hub.present()
        if present != [active.identity]:
            self.violate("no_idle_agent", f"{len(present)} agents in the room at the end")
        if any(not job.ended.is_set() for job in cluster.jobs if job is not active):
            self.violate("no_idle_agent", "a job other than the active tutor's still runs")
        if cluster.hub.max_concurrent_speakers() > 1 or floor_overlaps(cluster.hub):
            self.violate("one_speaker", "two agents spoke while both were in the room")
        self.check_dispatches()
        claims = sum(
            job.session.userdata.handoff_count for job in cluster.jobs if job.session is not None
        )
        self.result.in_session_handoffs += claims - len(self.results())

    def check_dispatches(self) -> None:
        server_side = self.server.history(self.room)
        by_handover = Counter(
            parse_dispatch_metadata(d.metadata).get("handover", "") for d in server_side
        )
        if any(count > 1 for count in by_handover.values()):
            self.violate("one_dispatch", "duplicate dispatches for one handover")
        live = [d for d in server_side if not d.state.deleted_at]
        if len(live) > self.completed:
            self.violate("one_dispatch", "a dispatch left behind by a handover that fell back")
        elif len(live) < self.completed:
            self.violate("one_dispatch", "a completed handover without its dispatch")


def crossing_results(job: Job) -> list[HandoverResult]:
    if job.session is None or job.session.userdata.crossing is None:
        return []
    return job.session.userdata.crossing.results


def floor_overlaps(hub: RoomHub) -> bool:
    """An agent starts speaking while another agent that spoke is still in the room."""
    holder: str | None = None
    for event in hub.timeline:
        if event.what == "leave" and event.identity == holder:
            holder = None
        elif event.what == "start":
            if holder not in (None, event.identity):
                return True
            holder = event.identity
    return False


# the run


@dataclass
class Soak:
    config: SoakConfig
    server: TwirpDispatchServer
    settings: Settings
    brain: Brain = field(default_factory=Brain)
    result: SoakResult = field(default_factory=SoakResult)
    rooms: dict[str, Conversation] = field(default_factory=dict)

    def create_fault(self, request: CreateAgentDispatchRequest) -> str | None:
        conversation = self.rooms.get(request.room)
        return conversation.create_fault(request) if conversation else None

    def on_create(self, dispatch: AgentDispatch) -> None:
        conversation = self.rooms.get(dispatch.room)
        if conversation is None:
            self.result.violate("one_dispatch", "dispatch after its conversation", dispatch.room)
            return
        conversation.on_create(dispatch)

    async def conversation(self, index: int) -> None:
        config = self.config
        rng = random.Random(f"{config.seed}:{index}")
        turns = plan_conversation(rng, index, config.min_turns, config.max_turns)
        room = f"soak-room-{index}"
        dispatcher = self.server.dispatcher(policy=config.policy)
        cluster = Cluster(
            RoomHub(),
            self.brain.scripts(),
            settings=self.settings,
            dispatcher=dispatcher,
            room_name=room,
        )
        conversation = Conversation(index, turns, cluster, rng, config, self.result, self.server)
        self.rooms[room] = conversation
        self.brain.learn(turns)
        try:
            async with asyncio.timeout(config.turn_timeout * (len(turns) + 2)):
                await conversation.run()
        except TimeoutError:
            conversation.violate("answered", "conversation timed out")
        except Exception as e:
            conversation.violate("no_exception", f"conversation raised {type(e).__name__}: {e}")
        finally:
            await cluster.close()
            await dispatcher.aclose()
            self.brain.forget(turns)
            del self.rooms[room]
        for error in cluster.errors:
            conversation.violate("no_exception", f"{type(error).__name__}: {error}")
        self.result.conversations += 1

    async def worker(self, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            await self.conversation(queue.get_nowait())


async def run_soak(config: SoakConfig = SoakConfig()) -> SoakResult:
    """Run `config.conversations` conversations, `config.concurrency` at a time."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    with tapped(loop) as tap:
        async with TwirpDispatchServer() as server:
            soak = Soak(config, server, soak_settings(server, config))
            server.create_fault, server.on_create = soak.create_fault, soak.on_create
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(config.conversations):
                queue.put_nowait(index)
            workers = min(config.concurrency, config.conversations)
            await asyncio.gather(*(soak.worker(queue) for _ in range(workers)))
        result = soak.result
        await finish(result, server, tap)
    result.wall = time.monotonic() - started
    return result


def soak_settings(server: TwirpDispatchServer, config: SoakConfig) -> Settings:
    return load_settings(
        livekit_url=server.url,
        livekit_api_key=server.api_key,
        livekit_api_secret=server.api_secret,
        openai_api_key="unused-offline",
        handover_ready_timeout=config.ready_timeout,
    )


async def finish(result: SoakResult, server: TwirpDispatchServer, tap: Tap) -> None:
    """Collect the server's and the client's counts; everything must have ended by now."""
    result.create_calls, result.delete_calls = server.create_calls, server.delete_calls
    for key, count in server.injected.items():
        result.faults[key.split(":", 1)[1]] += count
    result.attempts.update(tap.attempts)
    gc.collect()  # a task whose exception nobody retrieved reports it when collected
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    result.leftover_tasks = len(leftover)
    if leftover:
        names = sorted({t.get_name() for t in leftover})
        result.violate("no_exception", f"{len(leftover)} tasks left running: {names}", "end")
    for error in tap.errors:
        result.violate("no_exception", error, "log")
