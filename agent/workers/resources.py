"""What a worker builds once per job process, and what each job gets from it.

Per job process (prewarm, before a job is assigned): the records store (one connection
pool), the moderation client, the fixed lines' audio cache and the trace exporter; the
worker's entry adds its model clients. Per job: a `RecordWriter` flushed when the job shuts
down. Everything is kept typed, as one `ProcessResources` in the process's userdata."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from livekit.agents import JobContext, JobProcess, stt, vad

from agent.config.settings import RecordsSettings, Settings
from agent.conversation.lines import LineCache, set_line_cache
from agent.conversation.state import TutorKind, TutorModels
from agent.records import RecordsStore, RecordWriter
from agent.safety.moderation import Moderator, Policy
from agent.telemetry.tracing import configure_tracing
from agent.workers.models import moderation_client
from agent.workers.warmup import warm_records_models

logger = logging.getLogger("tutor.worker")

RESOURCES_KEY = "tutor.resources"


@dataclass
class ProcessResources:
    """What one job process built before its job, for every job it runs."""

    store: RecordsStore | None = None  # None: records are off
    moderator: Moderator | None = None  # None: moderation is off
    tutor_models: dict[TutorKind, TutorModels] = field(default_factory=dict)
    vad: vad.VAD | None = None  # None: VAD_ENGINE=none, or a realtime model ends turns
    stt: stt.STT | None = None  # None: built per job (streaming keeps loop-bound state)


def resources_of(proc: JobProcess) -> ProcessResources:
    """The process's resources (made empty on first use)."""
    resources = proc.userdata.get(RESOURCES_KEY)
    if not isinstance(resources, ProcessResources):
        resources = proc.userdata[RESOURCES_KEY] = ProcessResources()
    return resources


def open_store(settings: RecordsSettings) -> RecordsStore | None:
    return RecordsStore(settings.records_url) if settings.records_url else None


def build_moderator(settings: Settings) -> Moderator | None:
    if not settings.moderation_enabled:
        logger.warning("MODERATION_ENABLED=false: nothing the students or tutors say is checked")
        return None
    categories = [c.strip() for c in settings.moderation_urgent_categories.split(",") if c.strip()]
    return Moderator(
        moderation_client(settings),
        model=settings.moderation_model,
        timeout=settings.moderation_timeout,
        policy=Policy(
            concern_threshold=settings.moderation_concern_threshold,
            urgent_threshold=settings.moderation_urgent_threshold,
            urgent_categories=categories,
        ),
    )


def line_cache_directory(settings: Settings) -> Path:
    return Path(settings.line_cache_dir or Path(tempfile.gettempdir()) / "voice-tutor-lines")


def prewarm_process(proc: JobProcess, settings: Settings, worker: str) -> None:
    """Once per job process: the records store, the moderation client, the trace exporter."""
    resources = resources_of(proc)
    resources.store = open_store(settings)
    if settings.records_url:
        warm_records_models()
    resources.moderator = build_moderator(settings)
    set_line_cache(LineCache(line_cache_directory(settings)))
    configure_tracing(
        settings.otlp_traces_endpoint, service=worker, allow_pii=settings.traces_allow_pii
    )


def job_writer(ctx: JobContext, settings: Settings) -> RecordWriter | None:
    """This job's record writer (None when records are off), flushed at shutdown."""
    store = resources_of(ctx.proc).store
    if store is None:
        return None
    writer = RecordWriter(store, flush_timeout=settings.records_flush_timeout)

    # no parameter: the framework passes the shutdown reason to a callback that takes one
    # (it would land in `aclose`'s timeout)
    async def flush_records() -> None:
        await writer.aclose()

    ctx.add_shutdown_callback(flush_records)
    return writer


def job_moderator(ctx: JobContext) -> Moderator | None:
    return resources_of(ctx.proc).moderator
