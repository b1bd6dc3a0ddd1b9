"""Work of the worker's main process, off the loop that takes jobs: alert delivery and the
records retention purge, and synthesising every fixed line into the machine's cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import AgentServer

from agent.config.roster import roster_for
from agent.config.settings import Settings
from agent.conversation.lines import LineCache, handoff_lines, warm_lines
from agent.records import RecordsStore
from agent.records.retention import purge as purge_records
from agent.safety.alerts import deliver_forever, delivery_config
from agent.workers.models import voice_tts
from agent.workers.resources import line_cache_directory

logger = logging.getLogger("tutor.worker")


PURGE_INTERVAL = 24 * 3600.0


LINE_WARMUP_TIMEOUT = 120.0


class BackgroundWork:
    """Work of the worker's main process on a thread and event loop of its own, so that it
    never holds the loop that takes jobs and talks to LiveKit (opening the records store:
    imports, mapper set-up, migrations; each purge; synthesising fixed lines). A daemon: it
    ends with the worker."""

    def __init__(self, name: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.name = name
        self._work = work
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._work(), name=self.name)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        # not closed: a database driver's thread may still hand a cancelled query's result
        # to this loop, which must then accept it (a closed loop raises in that thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the work and wait for its thread (tests; a worker just exits)."""
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)


def schedule_line_warmup(server: AgentServer, settings: Settings, worker: str) -> BackgroundWork:
    """Once the worker has started: synthesise every handoff line its tutors can say into
    the machine's line cache, so that no student waits for one (the first use would
    synthesise it on the spot, after the floor is free)."""

    async def warm() -> None:
        roster = roster_for(settings)
        # a pipeline worker can run every tutor (a realtime one as its fallback)
        speakers = (
            roster.tutors if roster.mode_of(worker) == "pipeline" else roster.hosted_on(worker)
        )
        lines = handoff_lines(roster, speakers)
        voices = {voice: voice_tts(settings, voice) for voice, _ in lines}
        try:
            made = await asyncio.wait_for(
                warm_lines(LineCache(line_cache_directory(settings)), voices, lines),
                LINE_WARMUP_TIMEOUT,
            )
            logger.info("fixed lines ready", extra={"lines": len(lines), "synthesised": made})
        except TimeoutError:
            logger.warning("fixed lines were not all ready in time; the rest on first use")
        finally:
            for voice in voices.values():
                await voice.aclose()

    warmup = BackgroundWork("line-warmup", warm)
    server.on("worker_started", warmup.start)
    return warmup


def schedule_maintenance(server: AgentServer, settings: Settings) -> BackgroundWork | None:
    """From the worker's main process, which outlives jobs, on one records store: deliver
    the outbox's alerts, and purge records older than `RECORDS_RETENTION_DAYS` (at start,
    then daily). Started once the worker has started."""
    if not settings.records_url:
        return None
    if not settings.alert_webhook_secret and (
        settings.teacher_webhook_url or settings.safeguarding_webhook_url
    ):
        logger.warning("ALERT_WEBHOOK_SECRET is empty: alerts are signed with an empty key")

    async def maintain() -> None:
        store = RecordsStore(settings.records_url)
        try:
            await purge(store, settings.records_retention_days)  # first, once at start
            await asyncio.gather(
                deliver_forever(store, delivery_config(settings), settings.alert_poll_interval),
                purge_periodically(store, settings.records_retention_days),
            )
        finally:
            await store.aclose()

    maintenance = BackgroundWork("records-maintenance", maintain)
    server.on("worker_started", maintenance.start)
    return maintenance


async def purge(store: RecordsStore, days: float) -> None:
    try:
        await purge_records(store, older_than_days=days)
    except Exception as exc:
        logger.warning("records purge failed: %s", type(exc).__name__)


async def purge_periodically(
    store: RecordsStore, days: float, interval: float = PURGE_INTERVAL
) -> None:
    while True:
        await asyncio.sleep(interval)  # a schedule, not a coordination
        await purge(store, days)
