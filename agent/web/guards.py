"""Limits that protect the web service without locking out the people it serves.

- `BodyLimit`: a request body over `max_bytes` is refused with 413 before anything reads it
  (a declared `Content-Length`, or a chunked body counted as it arrives), so no handler
  parses, and no memory holds, what a client should never send.
- `SignInGuard`: sign-in attempts are limited by *failures* only, counted per username and
  client address together and per address, so a stranger's failures for "bob" from
  elsewhere never lock bob out, while guessing from one address is slowed down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from limits import RateLimitItem
from limits.strategies import RateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = {"error": "That request is too large."}


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes` on any path."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = True
            if too_large:
                await _refuse(send)
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _refuse(send)


class _BodyTooLarge(Exception):
    pass


async def _refuse(send: Send) -> None:
    body = json.dumps(TOO_LARGE).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class SignInGuard:
    """Failed sign-ins per (username, address) and per address; a success clears nothing
    (the window moves on by itself)."""

    limiter: RateLimiter
    per_name_and_address: RateLimitItem
    per_address: RateLimitItem

    def _keys(self, username: str, address: str) -> list[tuple[RateLimitItem, str]]:
        name = username.strip().lower()
        return [
            (self.per_name_and_address, f"signin-fail:{name}@{address}"),
            (self.per_address, f"signin-fail-ip:{address}"),
        ]

    def allowed(self, username: str, address: str) -> bool:
        return all(self.limiter.test(item, key) for item, key in self._keys(username, address))

    def failed(self, username: str, address: str) -> None:
        for item, key in self._keys(username, address):
            self.limiter.hit(item, key)
