"""Explicit agent dispatch with per-attempt timeouts, bounded retries and no duplicates.

`Dispatcher.dispatch` asks LiveKit to send a named agent worker into a room. Transport
failures, timeouts and 5xx answers are retried with exponential backoff; 4xx answers are
not. Because an attempt can succeed on the server yet time out or fail on the client, every
retry first lists the room's dispatches and returns an existing one with the same agent name
and metadata instead of creating another. Callers make the metadata unique per handover.

Logs go to ``tutor.dispatch`` with structured fields; the metadata text is never logged
(it may hold a child's question), only its length.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

import aiohttp
from livekit.api import LiveKitAPI, TwirpError
from livekit.protocol.agent import JobStatus
from livekit.protocol.agent_dispatch import AgentDispatch, CreateAgentDispatchRequest

from agent.telemetry import metrics

logger = logging.getLogger("tutor.dispatch")

HELD = (JobStatus.JS_PENDING, JobStatus.JS_RUNNING)  # a worker has the job, not finished


def job_held(dispatch: AgentDispatch) -> bool:
    """A worker holds one of this dispatch's jobs (pending or running): a tutor is coming
    or there."""
    return any(job.state.status in HELD for job in dispatch.state.jobs)


Outcome = Literal["created", "found_existing", "timeout", "transient_error", "rejected", "error"]

# aiohttp client errors that another attempt cannot fix
_PERMANENT_CLIENT_ERRORS: tuple[type[Exception], ...] = (aiohttp.InvalidURL, aiohttp.ClientSSLError)


class DispatchError(Exception):
    """A dispatch that was given up: `retryable` is False when the server refused it (4xx)
    or the failure was unexpected, True when every attempt failed transiently."""

    def __init__(
        self, message: str, *, attempts: int, retryable: bool, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class DispatchPolicy:
    """Timeouts and retry schedule of a `Dispatcher` (seconds)."""

    attempt_timeout: float = 4.0
    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 2.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("backoff must not be negative")

    def backoff(self, retry: int) -> float:
        """Delay before retry `retry` (1 = the second attempt); full jitter if enabled."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** (retry - 1))
        return random.uniform(0.0, delay) if self.jitter else delay


@dataclass(frozen=True)
class _Failure:
    """How one failed call is classified."""

    outcome: Outcome
    retryable: bool
    status: int | None = None


def _classify(exc: Exception) -> _Failure:
    if isinstance(exc, TimeoutError):  # also asyncio.TimeoutError and aiohttp timeouts
        return _Failure("timeout", retryable=True)
    if isinstance(exc, TwirpError):
        transient = exc.status >= 500
        outcome: Outcome = "transient_error" if transient else "rejected"
        return _Failure(outcome, retryable=transient, status=exc.status)
    if isinstance(exc, aiohttp.ClientError) and not isinstance(exc, _PERMANENT_CLIENT_ERRORS):
        return _Failure("transient_error", retryable=True)
    return _Failure("error", retryable=False)


def _error_fields(exc: Exception) -> dict[str, Any]:
    """Loggable facts about an error: never a server message (it could echo the request)."""
    fields: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, TwirpError):
        fields["status"] = exc.status
        fields["code"] = exc.code
    elif isinstance(exc, aiohttp.ClientError):
        fields["detail"] = str(exc)
    return fields


_LEVELS: dict[Outcome, int] = {
    "created": logging.INFO,
    "found_existing": logging.INFO,
    "timeout": logging.WARNING,
    "transient_error": logging.WARNING,
    "rejected": logging.ERROR,
    "error": logging.ERROR,
}


class DispatchClient(Protocol):
    """What a crossing needs of a dispatch client: `Dispatcher`, or a test's stand-in."""

    # dispatch(*, agent_name, room, metadata, log_fields=None): the dispatch made
    dispatch: Callable[..., Awaitable[Any]]

    async def cancel(self, dispatch: Any) -> bool: ...

    async def cancel_matching(self, *, agent_name: str, room: str, metadata: str) -> bool: ...


class Dispatcher:
    """Creates and cancels explicit agent dispatches through one `LiveKitAPI`.

    `aclose` closes the API only when this dispatcher created it (`from_credentials`);
    an API passed to the constructor stays the caller's to close.
    """

    def __init__(
        self,
        api: LiveKitAPI,
        *,
        policy: DispatchPolicy = DispatchPolicy(),
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._api = api
        self._policy = policy
        self._log_fields: dict[str, Any] = dict(log_fields or {})
        self._owns_api = False
        self._closed = False
        self.attempts = 0

    @classmethod
    def from_credentials(
        cls,
        url: str,
        api_key: str,
        api_secret: str,
        *,
        policy: DispatchPolicy = DispatchPolicy(),
        log_fields: Mapping[str, Any] | None = None,
    ) -> Dispatcher:
        """A dispatcher owning one `LiveKitAPI` (SDK failover off: retries are ours)."""
        client = LiveKitAPI(url, api_key, api_secret, failover=False)
        dispatcher = cls(client, policy=policy, log_fields=log_fields)
        dispatcher._owns_api = True
        return dispatcher

    @property
    def policy(self) -> DispatchPolicy:
        return self._policy

    async def served_by_earlier(self, *, room: str, dispatch_id: str, agent_name: str) -> bool:
        """True when another dispatch of `agent_name` into `room`, created before
        `dispatch_id`, has a job a worker holds (pending or running): that tutor serves the
        student, so this job must not greet too. The server's creation order settles a race
        between two jobs that start in the same instant (neither sees the other joined).
        One attempt: an unanswered question is False (better two tutors than none)."""
        try:
            async with asyncio.timeout(self._policy.attempt_timeout):
                dispatches = await self._api.agent_dispatch.list_dispatch(room)
        except (TimeoutError, TwirpError, aiohttp.ClientError) as exc:
            logger.warning("could not list the room's dispatches: %s", type(exc).__name__)
            return False
        mine = next((d for d in dispatches if d.id == dispatch_id), None)
        if mine is None:
            return False
        order = (mine.state.created_at, mine.id)
        return any(
            (other.state.created_at, other.id) < order and job_held(other)
            for other in dispatches
            if other.agent_name == agent_name and other.id != dispatch_id
        )

    async def dispatch(
        self,
        *,
        agent_name: str,
        room: str,
        metadata: str,
        log_fields: Mapping[str, Any] | None = None,
    ) -> AgentDispatch:
        """Dispatch `agent_name` into `room`; raises `DispatchError` when it gives up.

        `log_fields` (e.g. session id and student) are added to this call's log lines.
        """
        request = CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
        fields = {**self._log_fields, **(log_fields or {}), "target": agent_name, "room": room}
        fields["metadata_len"] = len(metadata)
        self.attempts = 0
        if self._closed:
            raise DispatchError("dispatcher is closed", attempts=0, retryable=False)
        last_error: Exception | None = None
        for attempt in range(1, self._policy.max_attempts + 1):
            if attempt > 1:
                metrics.DISPATCH_RETRIES.labels(agent_name).inc()
                await asyncio.sleep(self._policy.backoff(attempt - 1))
                existing = await self._find_existing(request, fields, attempt)
                if existing is not None:
                    return existing
            self.attempts = attempt
            try:
                created = await self._create(request)
            except Exception as exc:
                failure = _classify(exc)
                self._log(fields, attempt, failure.outcome, exc)
                if not failure.retryable:
                    raise self._give_up(request, attempt, failure) from exc
                last_error = exc
                continue
            self._log(fields, attempt, "created")
            return created
        final = _classify(last_error) if last_error else _Failure("error", retryable=True)
        raise self._give_up(request, self.attempts, final) from last_error

    async def cancel(self, dispatch: AgentDispatch) -> bool:
        """Delete `dispatch`; never raises, returns False (logged) when it failed."""
        fields = {**self._log_fields, "target": dispatch.agent_name, "room": dispatch.room}
        fields["dispatch_id"] = dispatch.id
        try:
            async with asyncio.timeout(self._policy.attempt_timeout):
                await self._api.agent_dispatch.delete_dispatch(dispatch.id, dispatch.room)
        except Exception as exc:
            extra = {**fields, "outcome": "cancel_failed"} | _error_fields(exc)
            logger.warning("dispatch cancel failed", extra=extra)
            return False
        logger.info("dispatch cancelled", extra={**fields, "outcome": "cancelled"})
        return True

    async def cancel_matching(self, *, agent_name: str, room: str, metadata: str) -> bool:
        """Delete any dispatch of `agent_name` in `room` with exactly `metadata`: one that a
        call cut short (or failed on the client only) may have created without confirming it.
        Never raises; False (logged) when the dispatches could not be listed or deleted."""
        fields = {**self._log_fields, "target": agent_name, "room": room}
        try:
            async with asyncio.timeout(self._policy.attempt_timeout):
                current = await self._api.agent_dispatch.list_dispatch(room)
        except Exception as exc:
            extra = {**fields, "outcome": "cancel_failed"} | _error_fields(exc)
            logger.warning("dispatch cleanup failed", extra=extra)
            return False
        found = [d for d in current if d.agent_name == agent_name and d.metadata == metadata]
        return all([await self.cancel(dispatch) for dispatch in found])

    async def aclose(self) -> None:
        """Stop dispatching; close the API if this dispatcher owns it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_api:
            await self._api.aclose()

    async def __aenter__(self) -> Dispatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _create(self, request: CreateAgentDispatchRequest) -> AgentDispatch:
        # the only bound: TwirpClient posts with timeout=None, which disables aiohttp's
        # session timeout, so a silent server would otherwise hang this call forever
        async with asyncio.timeout(self._policy.attempt_timeout):
            return await self._api.agent_dispatch.create_dispatch(request)

    async def _find_existing(
        self, request: CreateAgentDispatchRequest, fields: dict[str, Any], attempt: int
    ) -> AgentDispatch | None:
        """The dispatch an earlier attempt may have created; None if absent or unknown."""
        try:
            async with asyncio.timeout(self._policy.attempt_timeout):
                current = await self._api.agent_dispatch.list_dispatch(request.room)
        except Exception as exc:
            extra = {**fields, "attempt": attempt, "outcome": "list_failed"} | _error_fields(exc)
            logger.warning("dispatch check failed, creating anyway", extra=extra)
            return None
        for existing in current:
            if existing.agent_name == request.agent_name and existing.metadata == request.metadata:
                self._log(fields, attempt, "found_existing")
                return existing
        return None

    def _log(
        self,
        fields: Mapping[str, Any],
        attempt: int,
        outcome: Outcome,
        exc: Exception | None = None,
    ) -> None:
        extra: dict[str, Any] = {**fields, "attempt": attempt, "outcome": outcome}
        if exc is not None:
            extra |= _error_fields(exc)
        logger.log(_LEVELS[outcome], "dispatch attempt: %s", outcome, extra=extra)

    @staticmethod
    def _give_up(
        request: CreateAgentDispatchRequest, attempts: int, failure: _Failure
    ) -> DispatchError:
        message = (
            f"dispatch of {request.agent_name!r} to room {request.room!r} failed "
            f"({failure.outcome}) after {attempts} attempt(s)"
        )
        return DispatchError(
            message, attempts=attempts, retryable=failure.retryable, status=failure.status
        )
