"""Every worker of a roster in one process, on an in-memory room: a stand-in for LiveKit's
dispatch.

`dispatch()` starts the named worker's job the way the server would: the real
`run_tutor_job` under `fake_job_context(job_metadata=...)`, in the in-memory room, every
tutor on a scripted LLM (a list of replies or a function of the request) named by its kind
on a pipeline worker and `<kind>_rt` on a realtime worker. A job "leaves the room" when its
`ctx.shutdown()` is called. The roster is the shipped one unless a test gives another.

With `dispatcher` set (e.g. a real `agent.dispatch.client.Dispatcher` talking to
`harness.fakes.twirp.TwirpDispatchServer`), the tutors dispatch through it instead, and
whoever plays the server calls `admit()` for each dispatch it created. Errors of the jobs
and background tasks are collected in `errors`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, ConversationItemAddedEvent, llm
from livekit.agents.testing import fake_job_context

from agent.config.roster import Roster, default_roster
from agent.config.settings import Settings, load_settings
from agent.conversation.presence import wait_published
from agent.conversation.state import SessionUserdata, TutorKind, TutorModels
from agent.dispatch.client import DispatchClient
from agent.dispatch.metadata import _parse_fields
from agent.records import RecordsStore, RecordWriter
from agent.safety.moderation import Moderator
from agent.workers.job import JobModels, JobRoom, JobWiring, run_tutor_job
from harness.fakes.llm import RequestLog, Script, ScriptedLLM
from harness.fakes.room import MemoryRoom, RoomHub

ORCHESTRATOR_WORKER, ENGLISH_WORKER = "learning-orchestrator", "learning-english"


def llm_name(roster: Roster, kind: TutorKind) -> str:
    """The scripted LLM of `kind` on its own worker: `<kind>_rt` if that is a realtime one."""
    return f"{kind}_rt" if roster.runs_realtime(kind) else kind


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
    writer: RecordWriter | None = None  # this job's records (as a job process has its own)
    # what the job registered with `ctx.add_shutdown_callback`: run after it left the room,
    # as the framework's job shutdown does
    shutdown_callbacks: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


class NamedRoom(rtc.Room):
    """An unconnected `rtc.Room` with a name: what `ctx.room.name` reads in a job."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._fake_name = name

    @property
    def name(self) -> str:
        return self._fake_name


@dataclass
class Cluster:
    hub: RoomHub
    scripts: Mapping[str, Script]  # by LLM name: tutor kind, or e.g. "english_rt"
    settings: Settings = field(default_factory=lambda: load_settings(handover_ready_timeout=2.0))
    join_delay: float = 0.0
    unready_workers: set[str] = field(default_factory=set)  # their jobs never come up
    dispatcher: DispatchClient | None = None  # None: dispatch() and cancel() below
    room_name: str = ""  # the jobs' `ctx.room.name` ("" as in a bare fake job context)
    records: RecordsStore | None = None  # every job records there (None: no records)
    moderator: Moderator | None = None  # every job moderates with it (None: off)
    # an audio output per job (None: text only, as most tests run)
    outputs: Callable[[Job], Any] | None = None
    # the models of a job of worker W: (tutor models, session models); None: scripted LLMs
    models: Callable[[str], tuple[dict[TutorKind, TutorModels], Mapping[str, Any]]] | None = None
    log: RequestLog = field(default_factory=RequestLog)
    roster: Roster = field(default_factory=default_roster)
    jobs: list[Job] = field(default_factory=list)
    dispatched: list[tuple[str, str]] = field(default_factory=list)  # (worker, metadata)
    cancelled: list[str] = field(default_factory=list)
    rooms_closed: list[str] = field(default_factory=list)  # by which job (its identity)
    # the server's answer to "does an earlier dispatch's tutor serve this room?" per job
    served_by_earlier: Callable[[Job], bool] | None = None
    llms: dict[str, ScriptedLLM] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)  # from jobs and background tasks
    pending_starts: int = 0  # admitted jobs not started yet
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _closed: bool = False
    _owned: list[Any] = field(default_factory=list)  # model clients built for the jobs
    _students_seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        realtime = [llm_name(self.roster, k) for k in self.roster.tutors]
        for name in dict.fromkeys([*self.roster.tutors, *realtime]):
            script = self.scripts.get(name, ())
            script = script if callable(script) else list(script)
            self.llms[name] = ScriptedLLM(script, name=name, log=self.log)

    # the DispatchClient interface the tutors' Crossing uses (unless `dispatcher` is given)
    async def dispatch(
        self, *, agent_name: str, room: str, metadata: str, log_fields: object = None
    ) -> str:
        self.dispatched.append((agent_name, metadata))
        dispatch_id = f"AD_{len(self.dispatched)}"
        self.admit(agent_name, metadata)
        return dispatch_id

    def admit(self, worker: str, metadata: str, *, delay: float | None = None) -> None:
        """A dispatch was created: start the worker's job after `delay` (default
        `join_delay`), as LiveKit would, unless the worker is unready or the cluster closed."""
        if worker not in self.unready_workers and not self._closed:
            self.pending_starts += 1
            wait = self.join_delay if delay is None else delay
            self._spawn(self._start_later(worker, metadata, wait))

    async def _start_later(self, worker: str, metadata: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)  # simulated job assignment and connect
            if not self._closed:
                await self.start_job(worker, metadata)
        finally:
            self.pending_starts -= 1
            self._notify()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if task.cancelled() or (error := task.exception()) is None:
            return
        if not any(error is seen for seen in self.errors):
            self.errors.append(error)
            self._notify()

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

    async def cancel_matching(self, *, agent_name: str, room: str, metadata: str) -> bool:
        for number, made in enumerate(self.dispatched, 1):
            if made == (agent_name, metadata):
                self.cancelled.append(f"AD_{number}")
        return True

    async def start_job(self, worker: str, metadata: str) -> Job:
        """Start a job of `worker` and return it once its session is running. The student
        the metadata names is in the room from their first job on (as they would be: they
        joined first), unless a test put them there, or took them out, itself."""
        # read quietly: the job itself reports unreadable metadata, once
        student = _parse_fields(metadata)[0].get("student", "") if isinstance(metadata, str) else ""
        if student and student not in self._students_seen:
            self._students_seen.add(student)
            if not self.hub.is_present(student):
                await self.hub.join(student, student=True)
        identity = f"agent-{worker}-{next(self._ids)}"
        job = Job(worker, identity, metadata, await self.hub.join(identity))
        if self.records is not None:
            job.writer = RecordWriter(self.records, retry_base=0.05, retry_max=0.5)
        self.jobs.append(job)
        started = asyncio.Event()
        job_task = self._spawn(self._run(job, started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({job_task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if job.error is not None:
            raise job.error
        return job

    async def _run(self, job: Job, started: asyncio.Event) -> None:
        kind = self.roster.default_tutor(job.worker)
        room = NamedRoom(self.room_name) if self.room_name else None
        with fake_job_context(
            room=room, job_metadata=job.metadata, agent_identity=job.identity
        ) as ctx:
            ctx.shutdown = lambda reason="": self._end(job, reason)  # type: ignore[method-assign]
            ctx.add_shutdown_callback = job.shutdown_callbacks.append  # type: ignore[method-assign]
            try:
                job.session = await run_tutor_job(
                    ctx, kind=kind, settings=self.settings, wiring=self._wiring(job)
                )
            except BaseException as e:
                job.error = e
                raise
            finally:
                started.set()
            self._notify()
            await job.ended.wait()

    def _wiring(self, job: Job) -> JobWiring:
        session_models: Mapping[str, Any] = {}
        roster = self.roster
        if roster.mode_of(job.worker) == "pipeline":  # every tutor, as the worker's prewarm
            models = {kind: TutorModels(llm=self.llms[kind]) for kind in roster.tutors}
        else:
            models = {
                kind: TutorModels(llm=self.llms[llm_name(roster, kind)])
                for kind in roster.hosted_on(job.worker)
            }
        if self.models is not None:
            models, session_models = self.models(job.worker)
            self._owned.extend(m for t in models.values() for m in (t.llm, t.tts) if m)
            self._owned.extend(session_models.values())
        return JobWiring(
            models=JobModels(models, session_models),
            roster=roster,
            worker=job.worker,
            room=JobRoom(
                handover=job.room,
                presence=job.room,
                close=lambda: self._close_room(job),
                served_by_earlier=(
                    None if self.served_by_earlier is None else lambda: self._earlier(job)
                ),
            ),
            dispatcher=self.dispatcher if self.dispatcher is not None else self,
            workers=roster.elsewhere(job.worker),
            records=job.writer,
            moderator=self.moderator,
            prepare_session=lambda session: self._watch_speech(job, session),
        )

    async def _earlier(self, job: Job) -> bool:
        assert self.served_by_earlier is not None
        return self.served_by_earlier(job)

    async def _close_room(self, job: Job) -> None:
        """The server's DeleteRoom, as a job asks for it after the student left."""
        self.rooms_closed.append(job.identity)

    def _watch_speech(self, job: Job, session: AgentSession[SessionUserdata]) -> None:
        """Before the session starts: everything its tutors say, from the first word (and
        the job's audio output, if the test gives one)."""
        if self.outputs is not None:
            session.output.audio = self.outputs(job)

        def on_item(event: ConversationItemAddedEvent) -> None:
            item = event.item
            if isinstance(item, llm.ChatMessage) and item.role == "assistant":
                # text mode has no audio: a reply is an instant on the floor timeline
                self.hub.mark_spoken(job.identity)
                job.said.append(item.text_content or "")
                job.spoke.set()
                self._notify()

        session.on("conversation_item_added", on_item)

    def _end(self, job: Job, reason: str) -> None:
        job.end_reason = reason
        self._spawn(self._leave(job))

    async def _leave(self, job: Job) -> None:
        await job.room.leave()
        for callback in job.shutdown_callbacks:
            await callback()
        await self._flush_records(job)
        job.ended.set()
        self._notify()

    @staticmethod
    async def _flush_records(job: Job) -> None:
        """What a job's shutdown callback does: write what is left, then stop."""
        if job.writer is not None:
            await job.writer.aclose()

    def jobs_of(self, worker: str) -> list[Job]:
        return [j for j in self.jobs if j.worker == worker and j.session is not None]

    async def job(self, worker: str, number: int) -> Job:
        """The `number`-th running job of `worker`, once the (asynchronous) dispatch made it."""
        await self.until(lambda: len(self.jobs_of(worker)) >= number)
        return self.jobs_of(worker)[number - 1]

    async def said(self, job: Job, text: str) -> None:
        await self.until(lambda: text in job.said)

    async def close(self, timeout: float = 10.0) -> None:
        """End every job and background task (no job starts after this). What still runs
        after `timeout` is cancelled and reported in `errors`."""
        self._closed = True
        closed: set[int] = set()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for job in [j for j in self.jobs if id(j) not in closed]:
                        closed.add(id(job))
                        await self._close_job(job)
                    if not self._background:
                        break
                    await asyncio.wait(set(self._background), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            names = sorted(t.get_name() for t in self._background)
            self.errors.append(RuntimeError(f"still running at close: {names}"))
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await wait_published()  # no publication outlives the test's event loop
        # close the model clients the jobs were given (their connections die with this loop)
        await asyncio.gather(
            *(model.aclose() for model in self._owned if hasattr(model, "aclose")),
            return_exceptions=True,
        )

    async def _close_job(self, job: Job) -> None:
        if job.session is not None:
            crossing = job.session.userdata.crossing
            if crossing is not None:
                await crossing.wait_idle()
            await job.session.aclose()
        await self._flush_records(job)
        job.ended.set()
