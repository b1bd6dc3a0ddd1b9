"""`HandoverRoom` over a real `livekit.rtc.Room` (RPC and participant presence)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from livekit import rtc

from agent.handover.protocol import RpcFailed, RpcHandler


class LiveKitHandoverRoom:
    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        self._changed = asyncio.Event()
        self._left_on_purpose: dict[str, bool] = {}
        room.on("participant_connected", self._on_change)
        room.on("participant_disconnected", self._on_departure)
        room.on("disconnected", self._on_change)

    def _on_change(self, *_: object) -> None:
        self._changed.set()

    def _on_departure(self, participant: rtc.RemoteParticipant) -> None:
        reason = participant.disconnect_reason
        self._left_on_purpose[participant.identity] = (
            reason == rtc.DisconnectReason.CLIENT_INITIATED
        )
        self._changed.set()

    def left_on_purpose(self, identity: str) -> bool:
        return self._left_on_purpose.get(identity, False)

    def on_connection_lost(self, callback: Callable[[], None]) -> None:
        self._room.on("reconnecting", lambda *_: callback())

    @property
    def local_identity(self) -> str:
        return self._room.local_participant.identity

    def register_rpc(self, method: str, handler: RpcHandler) -> None:
        async def invoke(data: rtc.RpcInvocationData) -> str:
            try:
                return await handler(data.caller_identity, data.payload)
            except RpcFailed as e:
                raise rtc.RpcError(rtc.RpcError.ErrorCode.APPLICATION_ERROR, str(e)) from e

        self._room.local_participant.register_rpc_method(method, invoke)

    def unregister_rpc(self, method: str) -> None:
        self._room.local_participant.unregister_rpc_method(method)

    async def call_rpc(self, destination: str, method: str, payload: str, timeout: float) -> str:
        try:
            return await self._room.local_participant.perform_rpc(
                destination_identity=destination,
                method=method,
                payload=payload,
                response_timeout=timeout,
            )
        except rtc.RpcError as e:
            raise RpcFailed(f"{method} on {destination}: {e.message}") from e

    def is_present(self, identity: str) -> bool:
        return identity in self._room.remote_participants

    def other_tutors(self) -> list[str]:
        agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        return [p.identity for p in self._room.remote_participants.values() if p.kind == agent]

    async def wait_until_present(self, identity: str) -> None:
        while not self.is_present(identity):
            self._changed.clear()
            await self._changed.wait()

    async def wait_until_left(self, identity: str) -> None:
        while self.is_present(identity) and self._room.isconnected():
            self._changed.clear()
            await self._changed.wait()
