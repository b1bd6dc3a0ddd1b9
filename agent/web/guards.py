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
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
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


DEVICE_COOKIE = "tutor_device"
DEVICE_DAYS = 90
_DEVICE_SALT = "tutor.sign-in-device"


@dataclass
class SignInGuard:
    """Failed sign-ins per (username, address) and per address; a success clears nothing
    (the window moves on by itself).

    A browser that has signed in as a teacher before carries a device cookie (signed,
    `DEVICE_DAYS`): its attempts for that username count against that browser alone, so
    failures from other browsers, at the school's address or anywhere, never hold it."""

    limiter: RateLimiter
    per_name_and_address: RateLimitItem
    per_address: RateLimitItem
    secret: str = ""  # signs the device cookies (none without it)

    def _keys(
        self, username: str, address: str, device: str | None
    ) -> list[tuple[RateLimitItem, str]]:
        if device is not None:
            return [(self.per_name_and_address, f"signin-fail-device:{device}")]
        name = username.strip().lower()
        return [
            (self.per_name_and_address, f"signin-fail:{name}@{address}"),
            (self.per_address, f"signin-fail-ip:{address}"),
        ]

    def allowed(self, username: str, address: str, device: str | None = None) -> bool:
        keys = self._keys(username, address, device)
        return all(self.limiter.test(item, key) for item, key in keys)

    def failed(self, username: str, address: str, device: str | None = None) -> None:
        for item, key in self._keys(username, address, device):
            self.limiter.hit(item, key)

    def _signer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret, salt=_DEVICE_SALT)

    def device_cookie(self, username: str) -> str:
        """A new device cookie: this browser signed in as `username`."""
        name = username.strip().lower()
        return self._signer().dumps({"u": name, "d": secrets.token_urlsafe(12)})

    def device_of(self, cookie: str | None, username: str) -> str | None:
        """The device id in `cookie` if it is ours, recent, and for `username`."""
        if not cookie or not self.secret:
            return None
        try:
            data = self._signer().loads(cookie, max_age=DEVICE_DAYS * 86_400)
        except BadSignature:  # SignatureExpired included
            return None
        if not isinstance(data, dict) or data.get("u") != username.strip().lower():
            return None
        device = data.get("d")
        return device if isinstance(device, str) and device else None
