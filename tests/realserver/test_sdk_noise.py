"""Lines the LiveKit SDK logs by itself, shown with a bare `rtc.Room` on the real server and
none of our code, so that the worker-log checks may ignore exactly these texts
(`harness.realserver.SDK_NOISE`) and nothing else."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading

import pytest
from livekit import rtc

from harness import realserver
from harness.realserver import SDK_DATA_TRACK_ERROR, SDK_NOISE, LiveKitServer


class Seen(logging.Handler):
    """Keeps the SDK's records; `wanted` is set when one contains the text looked for."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.records: list[logging.LogRecord] = []
        self.wanted = threading.Event()  # the SDK logs from its own thread too

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.text in record.getMessage():
            self.wanted.set()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_bare_room_that_connects_logs_the_sdks_data_track_error(
    livekit: LiveKitServer,
) -> None:
    assert SDK_DATA_TRACK_ERROR in SDK_NOISE
    seen = Seen(SDK_DATA_TRACK_ERROR)
    sdk = logging.getLogger("livekit")
    sdk.addHandler(seen)
    room = rtc.Room()
    try:
        await room.connect(livekit.url, realserver.bare_token("bare", "bare"))
        logged = await asyncio.to_thread(seen.wanted.wait, 10.0)
    finally:
        await room.disconnect()
        sdk.removeHandler(seen)
    assert logged, [r.getMessage() for r in seen.records]
    [record] = [r for r in seen.records if SDK_DATA_TRACK_ERROR in r.getMessage()]
    assert record.levelno == logging.ERROR


@pytest.mark.usefixtures("run_dir")  # skipped, or failed in CI, where the tier cannot run
def test_the_server_under_test_is_the_version_compose_pins() -> None:
    binary = realserver.server_binary()
    assert binary is not None
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert done.stdout.split()[-1] == realserver.TESTED_SERVER.removeprefix("v"), done.stdout
