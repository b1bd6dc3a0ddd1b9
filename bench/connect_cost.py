"""What the SDK alone costs a tutor to join a room: CPU per `rtc.Room` connect and publish.

`python -m bench.connect_cost URL KEY SECRET` (run by `bench capacity --real-server` on the
worker's core, before its classes): a fresh interpreter joins `ROOMS` rooms one after
another as a tutor does (connect, publish one audio track, leave) and prints the CPU
seconds (user and system, every thread of the process) of the first join and the median of
the others. None of the product's code runs. The first is what a job in a process of its own
pays (the WebRTC runtime starts with it); the others, what a job sharing a warm runtime
(a thread) pays. Either is a floor under a class's greeting at the bell: N tutors joining at
once on one core need N times it before the last is in its room.
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import statistics
import sys

from livekit import rtc

from agent.settings import LiveKitSettings
from agent.token import student_token

ROOMS = 9


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


async def join_once(url: str, settings: LiveKitSettings) -> float:
    """CPU seconds one connect and one audio track's publish took."""
    token = student_token(
        settings, room=f"floor-{secrets.token_hex(4)}", identity=f"tutor-{secrets.token_hex(2)}"
    )
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


async def measure(url: str, settings: LiveKitSettings) -> dict[str, float]:
    joins = [await join_once(url, settings) for _ in range(ROOMS)]
    return {"first": joins[0], "warm": statistics.median(joins[1:])}


def main(argv: list[str]) -> int:
    url, key, secret = argv
    settings = LiveKitSettings(livekit_url=url, livekit_api_key=key, livekit_api_secret=secret)
    print(json.dumps(asyncio.run(measure(url, settings))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
