"""An alert webhook receiver on 127.0.0.1 that verifies each body's signature."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.safety.alerts import ALERT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    alert_id: str
    payload: dict[str, Any]
    signed: bool  # the signature matched the body under the shared secret
    accepted: bool


@dataclass
class WebhookReceiver:
    """`refuse` answers the next N deliveries with 503 (a receiver that is down)."""

    secret: str
    refuse: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    delivered: asyncio.Event = field(default_factory=asyncio.Event)  # one was accepted
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/alerts", self._alert)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/alerts"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.accepted]

    async def _alert(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify(body, request.headers.get(SIGNATURE_HEADER, ""), self.secret)
        accepted = self.refuse == 0 and signed
        if self.refuse:
            self.refuse -= 1
        self.received.append(
            Received(request.headers.get(ALERT_ID_HEADER, ""), json.loads(body), signed, accepted)
        )
        if accepted:
            self.delivered.set()
        return web.json_response({}, status=200 if accepted else 503)
