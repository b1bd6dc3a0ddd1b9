"""An in-memory room: participants with RPC, presence and attributes, and a timeline of who
speaks.

Each participant gets a `MemoryRoom` view implementing `agent.handover.protocol.HandoverRoom`.
`join_delay` and `rpc_delay` simulate the network and a worker's job start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from agent.handover.protocol import RpcFailed, RpcHandler


@dataclass(frozen=True)
class FloorEvent:
    at: float
    identity: str
    # "join", "leave", "start", "stop", "cut" (speech cut short by leaving), "attributes:<keys>"
    what: str


@dataclass
class RoomHub:
    rpc_delay: float = 0.0
    timeline: list[FloorEvent] = field(default_factory=list)
    students: set[str] = field(default_factory=set)
    # each participant's attributes, and every change in order: (identity, what was set)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    attribute_changes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    left_on_purpose: dict[str, bool] = field(default_factory=dict)
    _present: dict[str, MemoryRoom] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def join(self, identity: str, *, student: bool = False) -> MemoryRoom:
        view = MemoryRoom(self, identity)
        self._present[identity] = view
        if student:
            self.students.add(identity)
        self._record(identity, "join")
        await self._notify()
        return view

    async def leave(self, identity: str, *, on_purpose: bool = True) -> None:
        """`identity` leaves; `on_purpose=False`: their connection was lost instead."""
        self.left_on_purpose[identity] = on_purpose
        if self._present.pop(identity, None) is not None:
            if self.is_speaking(identity):
                self._record(identity, "cut")  # left in the middle of speaking
            self._record(identity, "leave")
        await self._notify()

    def mark_spoken(self, identity: str) -> None:
        """An utterance of no duration (text mode): an instant on the floor timeline."""
        self._record(identity, "start")
        self._record(identity, "stop")

    def first_words(self, identity: str) -> float | None:
        spans = self.speech_spans(identity)
        return spans[0][0] if spans else None

    def cut_short(self, identity: str) -> bool:
        return any(e.identity == identity and e.what == "cut" for e in self.timeline)

    def is_present(self, identity: str) -> bool:
        return identity in self._present

    def present(self) -> list[str]:
        """The tutors in the room (students are not counted)."""
        return [identity for identity in self._present if identity not in self.students]

    def is_speaking(self, identity: str) -> bool:
        state = False
        for e in self.timeline:
            if e.identity == identity and e.what in ("start", "stop", "cut"):
                state = e.what == "start"
        return state

    def max_concurrent_speakers(self) -> int:
        speaking: set[str] = set()
        worst = 0
        for e in self.timeline:
            if e.what == "start":
                speaking.add(e.identity)
            elif e.what in ("stop", "cut", "leave"):
                speaking.discard(e.identity)
            worst = max(worst, len(speaking))
        return worst

    def speech_spans(self, identity: str) -> list[tuple[float, float]]:
        spans: list[tuple[float, float]] = []
        started: float | None = None
        for e in self.timeline:
            if e.identity != identity:
                continue
            if e.what == "start":
                started = e.at
            elif e.what in ("stop", "cut") and started is not None:
                spans.append((started, e.at))
                started = None
        return spans

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds; re-checked whenever someone joins, leaves or sets
        attributes."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def _record(self, identity: str, what: str) -> None:
        self.timeline.append(FloorEvent(time.monotonic(), identity, what))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class MemoryRoom:
    def __init__(self, hub: RoomHub, identity: str) -> None:
        self.hub = hub
        self._identity = identity
        self._rpc: dict[str, RpcHandler] = {}
        self._connection_lost: list[Callable[[], None]] = []

    @property
    def local_identity(self) -> str:
        return self._identity

    def register_rpc(self, method: str, handler: RpcHandler) -> None:
        self._rpc[method] = handler

    def unregister_rpc(self, method: str) -> None:
        self._rpc.pop(method, None)

    async def call_rpc(self, destination: str, method: str, payload: str, timeout: float) -> str:
        target = self.hub._present.get(destination)
        if target is None:
            raise RpcFailed(f"{destination} is not in the room")
        handler = target._rpc.get(method)
        if handler is None:
            raise RpcFailed(f"{destination} does not handle {method}")
        try:
            async with asyncio.timeout(timeout):
                if self.hub.rpc_delay:
                    await asyncio.sleep(self.hub.rpc_delay)
                return await handler(self._identity, payload)
        except TimeoutError as e:
            raise RpcFailed(f"{method} on {destination} timed out") from e

    def other_tutors(self) -> list[str]:
        return [identity for identity in self.hub.present() if identity != self._identity]

    def is_present(self, identity: str) -> bool:
        return identity in self.hub._present

    async def wait_until_present(self, identity: str) -> None:
        async with self.hub._changed:
            await self.hub._changed.wait_for(lambda: self.is_present(identity))

    async def wait_until_left(self, identity: str) -> None:
        async with self.hub._changed:
            await self.hub._changed.wait_for(lambda: not self.is_present(identity))

    def left_on_purpose(self, identity: str) -> bool:
        return self.hub.left_on_purpose.get(identity, False)

    def on_connection_lost(self, callback: Callable[[], None]) -> None:
        self._connection_lost.append(callback)

    def lose_connection(self) -> None:
        """This participant's own connection to the room breaks (a lost server node)."""
        for callback in self._connection_lost:
            callback()

    async def leave(self) -> None:
        await self.hub.leave(self._identity)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """As `LocalParticipant.set_attributes`: merged into this participant's attributes."""
        if not self.is_present(self._identity):
            raise RpcFailed(f"{self._identity} is not in the room")
        self.hub.attributes[self._identity] = {
            **self.hub.attributes.get(self._identity, {}),
            **attributes,
        }
        self.hub.attribute_changes.append((self._identity, dict(attributes)))
        self.hub._record(self._identity, "attributes:" + ",".join(sorted(attributes)))
        await self.hub._notify()

    @asynccontextmanager
    async def speaking(self) -> AsyncIterator[None]:
        """Mark this participant as holding the floor for the duration of the block."""
        self.hub._record(self._identity, "start")
        try:
            yield
        finally:
            if self.is_present(self._identity) and self.hub.is_speaking(self._identity):
                self.hub._record(self._identity, "stop")
