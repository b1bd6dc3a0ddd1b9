"""The README's alert check: `python -m agent alerts listen` receives the signed alerts of
`python -m agent alerts test`, sent through the records store's outbox."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from agent.__main__ import main
from agent.safety.cli import receiver_app
from harness import REPO

SECRET = "test-alert-secret-of-at-least-32-characters"


async def test_a_listener_from_the_readme_receives_the_signed_test_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = io.StringIO()
    runner = web.AppRunner(receiver_app(SECRET, printed), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECORDS_URL", f"sqlite+aiosqlite:///{tmp_path / 'tutor.db'}")
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEACHER_WEBHOOK_URL", f"{url}/teacher")
    monkeypatch.setenv("SAFEGUARDING_WEBHOOK_URL", f"{url}/safeguarding")
    try:
        code = await asyncio.to_thread(main, ["alerts", "test", "--tier", "urgent"])
    finally:
        await runner.cleanup()
    received = printed.getvalue().splitlines()
    assert code == 0
    assert len(received) == 2 and all(line.endswith("signature OK") for line in received)
    assert {line.split()[3] for line in received} == {"/teacher:", "/safeguarding:"}
    assert all("tier=urgent" in line for line in received)


async def test_the_listener_refuses_a_body_signed_with_another_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = io.StringIO()
    runner = web.AppRunner(receiver_app("the-receivers-own-key", printed), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/teacher"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECORDS_URL", f"sqlite+aiosqlite:///{tmp_path / 'tutor.db'}")
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEACHER_WEBHOOK_URL", url)
    try:
        code = await asyncio.to_thread(main, ["alerts", "test"])
    finally:
        await runner.cleanup()
    assert code == 1  # not delivered: it stays in the outbox for a retry
    assert printed.getvalue().startswith("REFUSED alert")


def test_listen_without_a_secret_says_what_to_set(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "agent", "alerts", "listen", "--port", str(port)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "ALERT_WEBHOOK_SECRET" in done.stdout


async def test_the_worker_main_process_delivers_alerts_and_purges_old_records(
    tmp_path: Path,
) -> None:
    """`schedule_maintenance`: what each worker runs once it has started."""
    from datetime import timedelta

    from livekit.agents import AgentServer

    from agent.config.settings import load_settings
    from agent.records import RecordsStore
    from agent.records.models import SessionStarted
    from agent.records.store import utc_now
    from agent.safety.alerts import flag_and_alerts
    from agent.safety.moderation import Verdict
    from agent.workers.maintenance import schedule_maintenance
    from harness.fakes.webhook import WebhookReceiver

    url = f"sqlite+aiosqlite:///{tmp_path / 'tutor.db'}"
    store = RecordsStore(url)
    old = (utc_now() - timedelta(days=40)).timestamp()
    verdict = Verdict(tier="concern", categories=["harassment"], scores={"harassment": 0.8})
    await store.write(
        [
            SessionStarted("old", "kid", "room", at=old),
            SessionStarted("now", "kid", "room"),
            *flag_and_alerts(
                session_id="now",
                student="kid",
                speaker="student",
                text="x",
                verdict=verdict,
                action="redirected",
                recent=[],
            ),
        ]
    )
    async with WebhookReceiver(SECRET) as teacher:
        settings = load_settings(
            records_url=url,
            teacher_webhook_url=teacher.url,
            alert_webhook_secret=SECRET,
            alert_poll_interval=0.05,
        )
        server = AgentServer()
        maintenance = schedule_maintenance(server, settings)
        assert maintenance is not None
        server.emit("worker_started")
        try:
            await asyncio.wait_for(teacher.delivered.wait(), 10)
        finally:
            await asyncio.to_thread(maintenance.stop)
    assert len(teacher.accepted()) == 1 and teacher.accepted()[0].signed
    assert await store.export("old") is None and await store.export("now") is not None
    await store.aclose()
