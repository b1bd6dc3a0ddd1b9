"""Both workers in one process, on an in-memory room: a stand-in for LiveKit's dispatch.

`dispatch()` starts the named worker's job the way the server would: the real
`run_tutor_job` under `fake_job_context(job_metadata=...)`, in the in-memory room, every
tutor on a scripted LLM. A job "leaves the room" when its `ctx.shutdown()` is called.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession, ConversationItemAddedEvent, llm
from livekit.agents.testing import fake_job_context

from agent.settings import Settings, load_settings
from agent.state import SessionUserdata, TutorKind, TutorModels
from agent.workers.runner import JobDeps, run_tutor_job
from tests.fakes.llm import Reply, RequestLog, ScriptedLLM
from tests.fakes.room import MemoryRoom, RoomHub

ORCHESTRATOR_WORKER, ENGLISH_WORKER = "learning-orchestrator", "learning-english"
PIPELINE_KINDS: tuple[TutorKind, ...] = ("orchestrator", "math", "history", "english")


@dataclass
class Job:
    worker: str
    identity: str
    metadata: str
    room: MemoryRoom
    session: AgentSession[SessionUserdata] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    spoke: asyncio.Event = field(default_factory=asyncio.Event)
    said: list[str] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class Cluster:
    hub: RoomHub
    scripts: Mapping[str, Sequence[Reply]]  # by LLM name: tutor kind, or "english_rt"
    settings: Settings = field(default_factory=lambda: load_settings(handover_ready_timeout=2.0))
    join_delay: float = 0.0
    unready_workers: set[str] = field(default_factory=set)  # their jobs never come up
    log: RequestLog = field(default_factory=RequestLog)
    jobs: list[Job] = field(default_factory=list)
    dispatched: list[tuple[str, str]] = field(default_factory=list)  # (worker, metadata)
    cancelled: list[str] = field(default_factory=list)
    llms: dict[str, ScriptedLLM] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        for name in (*PIPELINE_KINDS, "english_rt"):
            self.llms[name] = ScriptedLLM(list(self.scripts.get(name, ())), name=name, log=self.log)

    # the DispatchClient interface the tutors' Crossing uses
    async def dispatch(
        self, *, agent_name: str, room: str, metadata: str, log_fields: object = None
    ) -> str:
        self.dispatched.append((agent_name, metadata))
        dispatch_id = f"AD_{len(self.dispatched)}"
        if agent_name not in self.unready_workers:
            self._spawn(self._start_later(agent_name, metadata))
        return dispatch_id

    async def _start_later(self, worker: str, metadata: str) -> None:
        await asyncio.sleep(self.join_delay)  # simulated job assignment and connect
        await self.start_job(worker, metadata)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds; re-checked whenever a job starts, speaks or ends."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self._spawn(notify())

    async def cancel(self, dispatch: str) -> bool:
        self.cancelled.append(dispatch)
        return True

    async def start_job(self, worker: str, metadata: str) -> Job:
        """Start a job of `worker` and return it once its session is running."""
        identity = f"agent-{worker}-{next(self._ids)}"
        job = Job(worker, identity, metadata, await self.hub.join(identity))
        self.jobs.append(job)
        started = asyncio.Event()
        job_task = asyncio.create_task(self._run(job, started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({job_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if job.error is not None:
            raise job.error
        return job

    async def _run(self, job: Job, started: asyncio.Event) -> None:
        kind: TutorKind = "orchestrator" if job.worker == ORCHESTRATOR_WORKER else "english"
        with fake_job_context(job_metadata=job.metadata, agent_identity=job.identity) as ctx:
            ctx.shutdown = lambda reason="": self._end(job, reason)  # type: ignore[method-assign]
            try:
                job.session = await run_tutor_job(
                    ctx, kind=kind, settings=self.settings, deps=self._deps(job)
                )
            except BaseException as e:
                job.error = e
                raise
            finally:
                started.set()
            self._watch_speech(job)
            self._notify()
            await job.ended.wait()

    def _deps(self, job: Job) -> JobDeps:
        if job.worker == ORCHESTRATOR_WORKER:
            models = {kind: TutorModels(llm=self.llms[kind]) for kind in PIPELINE_KINDS}
            workers: dict[TutorKind, str] = {"english": ENGLISH_WORKER}
        else:
            models = {"english": TutorModels(llm=self.llms["english_rt"])}
            workers = {"orchestrator": ORCHESTRATOR_WORKER}
        return JobDeps(
            tutor_models=models,
            session_models={},
            dispatcher=self,
            handover_room=job.room,
            workers=workers,
        )

    def _watch_speech(self, job: Job) -> None:
        assert job.session is not None

        def on_item(event: ConversationItemAddedEvent) -> None:
            item = event.item
            if isinstance(item, llm.ChatMessage) and item.role == "assistant":
                # text mode has no audio: a reply is an instant on the floor timeline
                self.hub.mark_spoken(job.identity)
                job.said.append(item.text_content or "")
                job.spoke.set()
                self._notify()

        job.session.on("conversation_item_added", on_item)

    def _end(self, job: Job, reason: str) -> None:
        job.end_reason = reason
        self._spawn(self._leave(job))

    async def _leave(self, job: Job) -> None:
        await job.room.leave()
        job.ended.set()
        self._notify()

    def jobs_of(self, worker: str) -> list[Job]:
        return [j for j in self.jobs if j.worker == worker and j.session is not None]

    async def job(self, worker: str, number: int) -> Job:
        """The `number`-th running job of `worker`, once the (asynchronous) dispatch made it."""
        await self.until(lambda: len(self.jobs_of(worker)) >= number)
        return self.jobs_of(worker)[number - 1]

    async def said(self, job: Job, text: str) -> None:
        await self.until(lambda: text in job.said)

    async def close(self) -> None:
        for job in self.jobs:
            if job.session is not None:
                crossing = job.session.userdata.crossing
                if crossing is not None:
                    await crossing.wait_idle()
                await job.session.aclose()
            job.ended.set()
