"""A local Twirp AgentDispatchService (and RoomService's ListParticipants and
RemoveParticipant), spoken to by the real `livekit.api.LiveKitAPI`.

Binary protobuf in and out, Twirp JSON errors, bearer tokens checked with `TokenVerifier`
(room_admin for the request's room), dispatches kept in memory. Faults are injected per
request from FIFO lists:

- ``faults`` (CreateDispatch): "500" (no create), "500_after_create", "hang" (create, then
  no answer until the server closes), "reset" (connection aborted, no create), "401".
- ``list_faults`` (ListDispatch): "500", "hang", "reset", "401".

When ``faults`` is empty, ``create_fault`` (if set) decides per CreateDispatch request.
``on_create`` is called with every dispatch created (LiveKit would now hand the job to a
worker), ``injected`` counts the faults applied, and ``history`` keeps deleted dispatches.
``participants[room]`` is what ListParticipants answers (a test adds an agent when a tutor
"joins"); dispatches are the stored objects, so a test can add jobs to their state.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from google.protobuf.message import DecodeError, Message
from livekit.api import TokenVerifier
from livekit.protocol.agent_dispatch import (
    AgentDispatch,
    CreateAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    ListAgentDispatchRequest,
    ListAgentDispatchResponse,
)
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.room import (
    DeleteRoomRequest,
    DeleteRoomResponse,
    ListParticipantsRequest,
    ListParticipantsResponse,
    RemoveParticipantResponse,
    RoomParticipantIdentity,
    SendDataRequest,
    SendDataResponse,
)

from agent.dispatch.client import Dispatcher, DispatchPolicy

SERVICE_PATH = "/twirp/livekit.AgentDispatchService"
ROOM_SERVICE_PATH = "/twirp/livekit.RoomService"
PROTOBUF = "application/protobuf"
DEFAULT_SECRET = "fake-twirp-secret-of-at-least-32-characters"
CREATE_FAULTS = frozenset({"500", "500_after_create", "hang", "reset", "401"})
LIST_FAULTS = frozenset({"500", "hang", "reset", "401"})

M = TypeVar(
    "M",
    CreateAgentDispatchRequest,
    ListAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    ListParticipantsRequest,
    RoomParticipantIdentity,
    SendDataRequest,
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CreateFault = Callable[[CreateAgentDispatchRequest], str | None]


class TwirpFailure(Exception):
    """Answered as a Twirp JSON error with `status`."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def twirp_error(status: int, code: str, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def protobuf_response(message: Message) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)


class TwirpDispatchServer:
    """In-memory AgentDispatchService on 127.0.0.1 (ephemeral port); use `async with`."""

    def __init__(
        self,
        *,
        api_key: str = "devkey",
        api_secret: str = DEFAULT_SECRET,
        create_fault: CreateFault | None = None,
        on_create: Callable[[AgentDispatch], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.faults: list[str] = []
        self.list_faults: list[str] = []
        self.create_fault = create_fault
        self.on_create = on_create
        self.injected: Counter[str] = Counter()  # "create:<fault>" / "list:<fault>"
        self.create_calls = 0
        self.list_calls = 0
        self.delete_calls = 0
        self.participants: dict[str, list[ParticipantInfo]] = {}
        self.removed: list[tuple[str, str]] = []  # (room, identity) RemoveParticipant took
        self.deleted_rooms: list[str] = []  # the rooms DeleteRoom closed, in order
        self.sent_data: list[SendDataRequest] = []  # what SendData sent, in order
        # a removed participant is still listed (as a server may, a moment after removing)
        self.linger = False
        self.url = ""
        self._verifier = TokenVerifier(api_key, api_secret)
        self._rooms: dict[str, list[AgentDispatch]] = {}
        self._history: dict[str, list[AgentDispatch]] = {}
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> TwirpDispatchServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(f"{SERVICE_PATH}/CreateDispatch", self._twirp(self._create))
        app.router.add_post(f"{SERVICE_PATH}/ListDispatch", self._twirp(self._list))
        app.router.add_post(f"{SERVICE_PATH}/DeleteDispatch", self._twirp(self._delete))
        app.router.add_post(
            f"{ROOM_SERVICE_PATH}/ListParticipants", self._twirp(self._list_participants)
        )
        app.router.add_post(
            f"{ROOM_SERVICE_PATH}/RemoveParticipant", self._twirp(self._remove_participant)
        )
        app.router.add_post(f"{ROOM_SERVICE_PATH}/DeleteRoom", self._twirp(self._delete_room))
        app.router.add_post(f"{ROOM_SERVICE_PATH}/SendData", self._twirp(self._send_data))
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Release hanging requests, then stop serving. Idempotent."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def dispatches(self, room: str) -> list[AgentDispatch]:
        return list(self._rooms.get(room, []))

    def history(self, room: str) -> list[AgentDispatch]:
        """Every dispatch created in `room`, deleted ones too (`state.deleted_at` set)."""
        return list(self._history.get(room, []))

    def dispatcher(
        self, *, policy: DispatchPolicy | None = None, api_secret: str | None = None
    ) -> Dispatcher:
        """A `Dispatcher` for this server (close it, e.g. `async with`)."""
        secret = api_secret if api_secret is not None else self.api_secret
        return Dispatcher.from_credentials(
            self.url, self.api_key, secret, policy=policy or DispatchPolicy()
        )

    # handlers

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.create_calls += 1
        fault = _next_fault(self.faults, CREATE_FAULTS)
        req = await self._authorized(request, CreateAgentDispatchRequest)
        if fault is None and self.create_fault is not None:
            fault = self.create_fault(req)
            if fault is not None and fault not in CREATE_FAULTS:
                raise TwirpFailure(400, "invalid_argument", f"unknown fault {fault!r}")
        if fault is not None:
            self.injected[f"create:{fault}"] += 1
        if fault in ("500", "401", "reset"):
            return await self._fail(request, fault)
        dispatch = self._store(req)
        if fault == "500_after_create":
            return twirp_error(500, "internal", "failed after create")
        if fault == "hang":
            return await self._hang()
        return protobuf_response(dispatch)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self.list_calls += 1
        fault = _next_fault(self.list_faults, LIST_FAULTS)
        req = await self._authorized(request, ListAgentDispatchRequest)
        if fault is not None:
            self.injected[f"list:{fault}"] += 1
            return await self._fail(request, fault)
        found = [d for d in self.dispatches(req.room) if req.dispatch_id in ("", d.id)]
        return protobuf_response(ListAgentDispatchResponse(agent_dispatches=found))

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        self.delete_calls += 1
        req = await self._authorized(request, DeleteAgentDispatchRequest)
        room = self._rooms.get(req.room, [])
        for index, dispatch in enumerate(room):
            if dispatch.id == req.dispatch_id:
                del room[index]
                dispatch.state.deleted_at = time.time_ns()
                return protobuf_response(dispatch)
        raise TwirpFailure(404, "not_found", "dispatch not found")

    async def _list_participants(self, request: web.Request) -> web.StreamResponse:
        req = await self._authorized(request, ListParticipantsRequest)
        found = self.participants.get(req.room, [])
        return protobuf_response(ListParticipantsResponse(participants=found))

    async def _remove_participant(self, request: web.Request) -> web.StreamResponse:
        req = await self._authorized(request, RoomParticipantIdentity)
        present = self.participants.get(req.room, [])
        if not any(p.identity == req.identity for p in present):
            raise TwirpFailure(404, "not_found", "participant not found")
        if not self.linger:
            self.participants[req.room] = [p for p in present if p.identity != req.identity]
        self.removed.append((req.room, req.identity))
        return protobuf_response(RemoveParticipantResponse())

    async def _send_data(self, request: web.Request) -> web.StreamResponse:
        """SendData: recorded; a room nobody is in is not found."""
        req = await self._authorized(request, SendDataRequest)
        if not self.participants.get(req.room):
            raise TwirpFailure(404, "not_found", "room not found")
        self.sent_data.append(req)
        return protobuf_response(SendDataResponse())

    async def _delete_room(self, request: web.Request) -> web.StreamResponse:
        """DeleteRoom: its participants and dispatches go (the grant is room_create)."""
        if request.content_type != PROTOBUF:
            raise TwirpFailure(400, "bad_route", f"unexpected content type {request.content_type}")
        req = DeleteRoomRequest.FromString(await request.read())
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            video = self._verifier.verify(token).video if scheme == "Bearer" else None
        except Exception:
            video = None
        if video is None or not video.room_create:
            raise TwirpFailure(401, "unauthenticated", "no room_create grant")
        self.participants.pop(req.room, None)
        self._rooms.pop(req.room, None)
        self.deleted_rooms.append(req.room)
        return protobuf_response(DeleteRoomResponse())

    # helpers

    def _twirp(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except TwirpFailure as failure:
                return twirp_error(failure.status, failure.code, failure.msg)

        return wrapped

    async def _authorized(self, request: web.Request, kind: type[M]) -> M:
        """The decoded body, if the bearer token grants room_admin for its room."""
        if request.content_type != PROTOBUF:
            raise TwirpFailure(400, "bad_route", f"unexpected content type {request.content_type}")
        try:
            message = kind.FromString(await request.read())
        except DecodeError as exc:
            raise TwirpFailure(400, "malformed", "body is not a valid message") from exc
        self._check_token(request.headers.get("Authorization", ""), message.room)
        return message

    def _check_token(self, header: str, room: str) -> None:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            raise TwirpFailure(401, "unauthenticated", "missing bearer token")
        try:
            claims = self._verifier.verify(token)
        except Exception as exc:
            raise TwirpFailure(401, "unauthenticated", "invalid token") from exc
        video = claims.video
        if video is None or not video.room_admin or video.room != room:
            raise TwirpFailure(401, "unauthenticated", "no room_admin grant for this room")

    def _store(self, req: CreateAgentDispatchRequest) -> AgentDispatch:
        dispatch = AgentDispatch(
            id=f"AD_{next(self._ids)}",
            agent_name=req.agent_name,
            room=req.room,
            metadata=req.metadata,
        )
        dispatch.state.created_at = time.time_ns()
        self._rooms.setdefault(req.room, []).append(dispatch)
        self._history.setdefault(req.room, []).append(dispatch)
        if self.on_create is not None:
            self.on_create(dispatch)
        return dispatch

    async def _fail(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault == "500":
            return twirp_error(500, "internal", "injected failure")
        if fault == "401":
            return twirp_error(401, "unauthenticated", "injected failure")
        if fault == "hang":
            return await self._hang()
        return _abort(request)

    async def _hang(self) -> web.StreamResponse:
        await self._closing.wait()
        return twirp_error(503, "unavailable", "server closing")


def _next_fault(queue: list[str], known: frozenset[str]) -> str | None:
    if not queue:
        return None
    fault = queue.pop(0)
    if fault not in known:
        raise TwirpFailure(400, "invalid_argument", f"unknown fault {fault!r}")
    return fault


def _abort(request: web.Request) -> web.StreamResponse:
    """Drop the connection without a response."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
