"""What the SDK alone costs a tutor to join a room: CPU per `rtc.Room` connect and publish.

`python -m bench.connect_cost URL` (run by `bench capacity --real-server` on the worker's
core, before its classes): a fresh interpreter joins `ROOMS` bare rooms (no dispatch) one
after another as a tutor does (connect, publish one audio track, leave) and prints the CPU
seconds (user and system, every thread of the process) of the first join and the median of
the others. None of the product's code runs. The first is what a job in a process of its own
pays (the WebRTC runtime starts with it); the others, what a job sharing a warm runtime
(a thread) pays. Either is a floor under a class's greeting at the bell: N tutors joining at
once on one core need N times it before the last is in its room.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys

from livekit import rtc

from harness.measure import cpu_seconds
from harness.realserver import bare_token

ROOMS = 9


async def join_once(url: str) -> float:
    """CPU seconds one connect and one audio track's publish took."""
    token = bare_token("floor", "tutor")
    room = rtc.Room()
    before = cpu_seconds()
    await room.connect(url, token)
    source = rtc.AudioSource(24_000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("voice", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    spent = cpu_seconds() - before
    await room.disconnect()
    return spent


async def measure(url: str) -> dict[str, float]:
    joins = [await join_once(url) for _ in range(ROOMS)]
    return {"first": joins[0], "warm": statistics.median(joins[1:])}


def main(argv: list[str]) -> int:
    [url] = argv
    print(json.dumps(asyncio.run(measure(url))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
