"""`python -m agent alerts listen|test`: see an alert arrive, signed, before a child needs it.

    python -m agent alerts listen --port 8099     a webhook receiver that verifies signatures
    python -m agent alerts test --tier urgent     a flagged test conversation, its alerts sent

`test` records a test session with a flag through the same path a real flag takes (the
records store's outbox) and makes one delivery pass to the configured webhooks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.config.settings import Settings, SettingsError, load_settings
from agent.records import RecordsStore
from agent.records.models import SessionEnded, SessionStarted, TurnRecord
from agent.safety.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    deliver_due,
    delivery_config,
    flag_and_alerts,
    verify,
)
from agent.safety.moderation import Verdict

TEST_TEXT = "(a test alert: no child said this)"


class ReceiverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    alert_webhook_secret: SecretStr | None = None


def add_parser(commands: Any) -> None:
    alerts = commands.add_parser("alerts", help="receive test alerts, or send one")
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    listen = sub.add_parser("listen", help="a webhook receiver that verifies each signature")
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=8099)
    test = sub.add_parser("test", help="record a flagged test conversation and send its alerts")
    test.add_argument("--tier", choices=["concern", "urgent"], default="concern")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.alerts_command == "listen":
        secret = ReceiverSettings().alert_webhook_secret
        if secret is None:
            print("error: set ALERT_WEBHOOK_SECRET (the workers' key) to verify alerts", file=out)
            return 2
        return asyncio.run(listen(args.host, args.port, secret.get_secret_value(), out))
    try:
        settings = load_settings(Settings)
    except SettingsError as e:
        print(f"error: {e}", file=out)
        return 2
    if not settings.records_url:
        print("error: RECORDS_URL is empty: alerts go through the records store", file=out)
        return 2
    return asyncio.run(send_test_alert(settings, args.tier, out))


def receiver_app(secret: str, out: TextIO) -> web.Application:
    async def alert(request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify(body, request.headers.get(SIGNATURE_HEADER, ""), secret)
        alert_id = request.headers.get(ALERT_ID_HEADER, "?")
        if not signed:
            print(f"REFUSED alert {alert_id}: the signature does not match", file=out, flush=True)
            return web.json_response({"error": "bad signature"}, status=401)
        payload = json.loads(body)
        print(
            f"alert {alert_id} on {request.path}: tier={payload.get('tier')} "
            f"channel={payload.get('channel')} session={payload.get('session_id')} "
            f"student={payload.get('student')} signature OK",
            file=out,
            flush=True,
        )
        return web.json_response({"received": alert_id})

    app = web.Application()
    app.router.add_post("/{channel:.*}", alert)
    return app


async def listen(host: str, port: int, secret: str, out: TextIO) -> int:
    runner = web.AppRunner(receiver_app(secret, out), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"listening for alerts on http://{host}:{port}/ (Ctrl-C to stop)", file=out, flush=True)
    try:
        await asyncio.Event().wait()  # until interrupted
    finally:
        await runner.cleanup()
    return 0


async def send_test_alert(settings: Settings, tier: str, out: TextIO) -> int:
    store = RecordsStore(settings.records_url)
    session_id = f"test-{uuid.uuid4().hex[:8]}"
    verdict = Verdict(
        tier="urgent" if tier == "urgent" else "concern",
        categories=["self-harm/intent"] if tier == "urgent" else ["harassment"],
        scores={"self-harm/intent": 0.9} if tier == "urgent" else {"harassment": 0.8},
    )
    try:
        records = [
            SessionStarted(session_id, "test-student", "test-room"),
            TurnRecord(session_id, "test-turn", "student", TEST_TEXT, at=time.time()),
            *flag_and_alerts(
                session_id=session_id,
                student="test-student",
                speaker="student",
                text=TEST_TEXT,
                verdict=verdict,
                action="test",
                recent=[("student", TEST_TEXT)],
            ),
            SessionEnded(session_id, "test"),
        ]
        await store.write(records)
        async with aiohttp.ClientSession() as http:
            counts = await deliver_due(store, delivery_config(settings), http=http)
        doc = await store.export(session_id)
    finally:
        await store.aclose()
    assert doc is not None
    print(f"test session {session_id}: {tier} flag recorded", file=out)
    for alert in doc["alerts"]:
        print(
            f"alert {alert['id']} to {alert['channel']}: {alert['status']}"
            + (f" ({alert['last_error']})" if alert["last_error"] else ""),
            file=out,
        )
    return 0 if counts.get("delivered", 0) == len(doc["alerts"]) else 1
