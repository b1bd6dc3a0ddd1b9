"""The floor handover between tutors on different workers, over a narrow room interface.

Outgoing tutor (O) and incoming tutor (I), in the student's room:

1. O announces the handover (its line starts playing), stops listening, and dispatches I
   with metadata naming O's identity and a fresh handover id.
2. I joins, fetches the conversation so far from O (RPC `tutor.handover.context`), prepares
   its session without listening or speaking, and tells O it is ready
   (RPC `tutor.handover.ready`, answered "go", or "cancelled" if O already gave up).
3. O, once I is ready and its own line has finished, tells I the floor is free (RPC
   `tutor.handover.floor`), then ends its job and leaves the room.
4. I takes the floor at that word, or the moment O has left if the word never comes, and
   answers at once. (O's session closing and its leaving take 0.1-0.3 s on a real server:
   waiting for the departure alone put that in the silence.)

If I is not ready within the timeout, O cancels the dispatch and falls back (the caller
decides how). Every wait here has a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from livekit.agents import llm

logger = logging.getLogger("tutor.handover")

CONTEXT_RPC = "tutor.handover.context"
READY_RPC = "tutor.handover.ready"
FLOOR_RPC = "tutor.handover.floor"
FLOOR_RELEASE_TIMEOUT = 1.0  # the word is an optimisation: I also takes the floor when O leaves
GO, CANCELLED = "go", "cancelled"
# LiveKit RPC payloads are limited to 15 KiB; the transfer stays well below
MAX_TRANSFER_BYTES = 12_000
MAX_TRANSFER_TURNS = 30


class RpcFailed(Exception):
    """An RPC to another participant failed or timed out."""


RpcHandler = Callable[[str, str], Awaitable[str]]  # (caller identity, payload) -> response


class HandoverRoom(Protocol):
    """The little of a LiveKit room the handover needs (see `LiveKitHandoverRoom`)."""

    @property
    def local_identity(self) -> str: ...

    def register_rpc(self, method: str, handler: RpcHandler) -> None: ...

    def unregister_rpc(self, method: str) -> None: ...

    async def call_rpc(self, destination: str, method: str, payload: str, timeout: float) -> str:
        """Call `method` on `destination`; raise `RpcFailed` on any failure."""
        ...

    def is_present(self, identity: str) -> bool: ...

    def other_tutors(self) -> list[str]:
        """The tutors (agent participants) in the room besides this one."""
        ...

    async def wait_until_present(self, identity: str) -> None: ...

    async def wait_until_left(self, identity: str) -> None: ...

    def left_on_purpose(self, identity: str) -> bool:
        """Whether `identity` left the room themselves (a Leave, or their page unloading),
        rather than losing their connection."""
        ...

    def on_connection_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` when this participant's own connection to the room breaks."""
        ...


def new_handover_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Transfer:
    """The conversation so far, as the incoming tutor receives it."""

    handover_id: str
    turns: list[tuple[str, str]] = field(default_factory=list)  # (role, text), oldest first

    def to_json(self) -> str:
        return json.dumps(
            {"handover": self.handover_id, "turns": [list(t) for t in self.turns]},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Transfer:
        data = json.loads(text)
        turns = [
            (str(role), str(content))
            for role, content in data.get("turns", [])
            if role in ("user", "assistant")
        ]
        return cls(handover_id=str(data["handover"]), turns=turns)

    @classmethod
    def from_history(cls, handover_id: str, history: llm.ChatContext) -> Transfer:
        """The newest user/assistant turns of `history` that fit the size bound."""
        turns = [
            (item.role, item.text_content)
            for item in history.items
            if item.type == "message" and item.role in ("user", "assistant") and item.text_content
        ][-MAX_TRANSFER_TURNS:]
        transfer = cls(handover_id, turns)
        while turns and len(transfer.to_json().encode()) > MAX_TRANSFER_BYTES:
            turns = turns[1:]
            transfer = cls(handover_id, turns)
        return transfer

    def to_chat_ctx(self) -> llm.ChatContext:
        ctx = llm.ChatContext.empty()
        for role, text in self.turns:
            ctx.add_message(role=role, content=text)  # type: ignore[arg-type]
        return ctx

    @property
    def has_student_turn(self) -> bool:
        """The outgoing tutor routes in reply to the student, so their turn is in here."""
        return any(role == "user" for role, _ in self.turns)


class Outcome(StrEnum):
    HANDED_OVER = "handed_over"
    NOT_READY = "not_ready"  # the incoming tutor did not report ready in time
    DISPATCH_FAILED = "dispatch_failed"


@dataclass
class HandoverResult:
    outcome: Outcome
    dispatch: Any = None
    ready_after: float | None = None  # seconds from start to the incoming tutor's "ready"


async def hand_over(
    room: HandoverRoom,
    *,
    handover_id: str,
    transfer: Callable[[], Transfer],
    dispatch: Callable[[], Awaitable[Any]],
    cancel_dispatch: Callable[[Any], Awaitable[Any]],
    announcement_done: Awaitable[Any],
    ready_timeout: float,
) -> HandoverResult:
    """The outgoing side. On `HANDED_OVER` the caller must end its job and leave the room."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    ready = asyncio.Event()
    cancelled = False

    async def on_context(caller: str, payload: str) -> str:
        if payload != handover_id:
            raise RpcFailed(f"unknown handover {payload!r}")
        return transfer().to_json()

    granted: list[str] = []  # who got the floor: one tutor only, even if dispatched twice

    async def on_ready(caller: str, payload: str) -> str:
        if payload != handover_id:
            raise RpcFailed(f"unknown handover {payload!r}")
        if cancelled or (granted and granted[0] != caller):
            return CANCELLED
        granted.append(caller)
        ready.set()
        return GO

    room.register_rpc(CONTEXT_RPC, on_context)
    room.register_rpc(READY_RPC, on_ready)
    dispatch_task = asyncio.create_task(dispatch(), name="handover_dispatch")
    ready_task = asyncio.create_task(ready.wait(), name="handover_ready")
    try:
        pending: set[asyncio.Future[Any]] = {dispatch_task, ready_task}
        deadline = started + ready_timeout
        while not ready.is_set() and pending and (remaining := deadline - loop.time()) > 0:
            _done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if dispatch_task.done() and dispatch_task.exception() is not None:
                break
        if ready.is_set():
            # the incoming tutor is here, so its dispatch exists: a retry still in flight
            # could only create a second one (and must not outlive this job's API client)
            if not dispatch_task.done():
                dispatch_task.cancel()
            await asyncio.gather(dispatch_task, return_exceptions=True)
            await announcement_done
            await release_floor(room, incoming=granted[0], handover_id=handover_id)
            return HandoverResult(
                Outcome.HANDED_OVER,
                dispatch=_result_or_none(dispatch_task),
                ready_after=loop.time() - started,
            )
        cancelled = True
        if dispatch_task.done() and dispatch_task.exception() is not None:
            logger.warning("handover dispatch failed: %s", dispatch_task.exception())
            return HandoverResult(Outcome.DISPATCH_FAILED)
        logger.warning("incoming tutor not ready after %.1fs, cancelling", ready_timeout)
        dispatch_task.cancel()
        await asyncio.gather(dispatch_task, return_exceptions=True)
        made = _result_or_none(dispatch_task)
        if made is not None:
            await cancel_dispatch(made)
        return HandoverResult(Outcome.NOT_READY, dispatch=made)
    finally:
        ready_task.cancel()
        if not dispatch_task.done():  # the caller gave up on the handover (its job ends)
            dispatch_task.cancel()
        room.unregister_rpc(CONTEXT_RPC)
        room.unregister_rpc(READY_RPC)


def _result_or_none(task: asyncio.Task[Any]) -> Any:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return None


async def fetch_transfer(
    room: HandoverRoom, *, outgoing: str, handover_id: str, timeout: float
) -> Transfer | None:
    """The incoming side: the conversation so far, or None (then metadata is all we have)."""
    try:
        async with asyncio.timeout(timeout):
            await room.wait_until_present(outgoing)
            payload = await room.call_rpc(outgoing, CONTEXT_RPC, handover_id, timeout)
        transfer = Transfer.from_json(payload)
    except (TimeoutError, RpcFailed, ValueError, KeyError, TypeError) as e:
        logger.warning("no conversation transfer from %s (%s); using metadata", outgoing, e)
        return None
    if transfer.handover_id != handover_id:
        logger.warning("transfer for another handover ignored")
        return None
    return transfer


async def declare_ready(
    room: HandoverRoom, *, outgoing: str, handover_id: str, timeout: float
) -> bool:
    """Tell the outgoing tutor we are ready. True means: take the floor once it has left."""
    try:
        answer = await room.call_rpc(outgoing, READY_RPC, handover_id, timeout)
    except RpcFailed as e:
        # an outgoing tutor that is gone cannot object, and the student must not be alone
        present = room.is_present(outgoing)
        logger.warning("ready not acknowledged (%s); outgoing present=%s", e, present)
        return not present
    return answer == GO


async def release_floor(room: HandoverRoom, *, incoming: str, handover_id: str) -> None:
    """The outgoing side, its line over: the floor is free now (before it has left)."""
    try:
        await room.call_rpc(incoming, FLOOR_RPC, handover_id, FLOOR_RELEASE_TIMEOUT)
    except RpcFailed as e:  # the incoming tutor takes the floor when we have left instead
        logger.info("floor release not delivered (%s); the departure will do", e)


@contextlib.contextmanager
def floor_release(
    room: HandoverRoom, *, outgoing: str, handover_id: str
) -> Iterator[asyncio.Event]:
    """The incoming side: an event set when the outgoing tutor says the floor is free.
    Entered before reporting ready, so the word cannot come before anyone listens."""
    released = asyncio.Event()

    async def on_release(caller: str, payload: str) -> str:
        if caller != outgoing or payload != handover_id:
            raise RpcFailed("the floor is not the caller's to give")
        released.set()
        return GO

    room.register_rpc(FLOOR_RPC, on_release)
    try:
        yield released
    finally:
        room.unregister_rpc(FLOOR_RPC)


async def wait_for_floor(
    room: HandoverRoom,
    *,
    outgoing: str,
    timeout: float,
    released: asyncio.Event | None = None,
) -> bool:
    """Wait until the outgoing tutor has said the floor is free (`released`) or has left.
    False if neither happened within `timeout`."""
    waits = {asyncio.ensure_future(room.wait_until_left(outgoing))}
    if released is not None:
        waits.add(asyncio.ensure_future(released.wait()))
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    if not done:
        logger.warning("outgoing tutor %s still in the room after %.1fs", outgoing, timeout)
        return False
    return True
