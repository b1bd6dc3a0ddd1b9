"""Writes records in the background, in batches, so that no turn ever waits for a database.

`submit` never blocks and never raises: it appends to a bounded buffer and wakes the
writer task. The task writes what has accumulated in one transaction; when the store is
unreachable or locked it keeps the batch, logs one warning for the outage, and retries with
backoff until the store is back. `aclose` flushes what is left within a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from agent.records.models import Record
from agent.records.store import RecordsStore
from agent.telemetry import metrics

logger = logging.getLogger("tutor.records")

DEFAULT_MAX_BUFFER = 10_000
DEFAULT_BATCH_SIZE = 200


class RecordWriter:
    def __init__(
        self,
        store: RecordsStore,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry_base: float = 0.25,
        retry_max: float = 10.0,
        flush_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.flush_timeout = flush_timeout
        self.written = 0
        self.failures = 0  # failed batch writes, in total
        self.dropped = 0
        self._buffer: deque[Record] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing_since: int = 0  # consecutive failed writes

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def submit(self, record: Record) -> None:
        """Queue `record` for writing; never blocks or raises."""
        if self._closing.is_set():
            self._drop(1, "writer closed")
            return
        if len(self._buffer) >= self.max_buffer:
            self._drop(1, "buffer full")
            return
        self._buffer.append(record)
        metrics.RECORDS_QUEUE_DEPTH.inc()
        self._idle.clear()
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="records_writer")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float | None = None) -> None:
        """Write what is left (within `timeout`, default `flush_timeout`), then stop."""
        timeout = self.flush_timeout if timeout is None else timeout
        flushed = await self.flush(timeout)
        self._closing.set()
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if not flushed and self._buffer:
            left = len(self._buffer)
            self._buffer.clear()
            metrics.RECORDS_QUEUE_DEPTH.dec(left)
            self._drop(left, f"not written within {timeout:.1f}s of the job's end")

    async def _run(self) -> None:
        while not self._closing.is_set():
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._buffer:
                batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
                if await self._write(batch):
                    for _ in batch:
                        self._buffer.popleft()
                    metrics.RECORDS_QUEUE_DEPTH.dec(len(batch))
                else:
                    await self._backoff()
            self._idle.set()

    async def _write(self, batch: list[Record]) -> bool:
        try:
            await self.store.write(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self._failing_since += 1
            metrics.RECORDS_WRITE_FAILURES.inc()
            if self._failing_since == 1:
                logger.warning(
                    "records store unavailable, keeping %d record(s) and retrying: %s",
                    len(self._buffer),
                    type(exc).__name__,
                    extra={"store": self.store.describe(), "error": type(exc).__name__},
                )
            return False
        if self._failing_since:
            logger.info(
                "records store reachable again after %d failed write(s)", self._failing_since
            )
            self._failing_since = 0
        self.written += len(batch)
        metrics.RECORDS_WRITTEN.inc(len(batch))
        return True

    async def _backoff(self) -> None:
        delay = min(self.retry_max, self.retry_base * 2 ** (self._failing_since - 1))
        try:
            async with asyncio.timeout(delay):
                await self._closing.wait()
        except TimeoutError:
            pass

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        metrics.RECORDS_DROPPED.inc(count)
        logger.error("%d record(s) not written: %s", count, why)
