"""A student as a real LiveKit client (`livekit.rtc.Room`): speaks WAV files in real time
on a microphone track, and keeps what it hears, participant by participant: when each one's
audio was loud, what each one's captions said, and who was in the room.

A test asserts on this record only (who spoke, in what order, the silence between), never on
the workers' internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from harness.wav import read_wav

RATE = 48_000
FRAME = RATE // 50  # 20 ms of microphone per frame, as a browser's Opus packet
# what is heard is kept at 20 ms resolution, at 16 kHz: enough to time speech and its gaps,
# and a class of students costs the core they share (with the server) a fifth of 10 ms frames
# at 48 kHz, so a capacity measurement measures the worker, not its students
HEARD_RATE = 16_000
HEARD_FRAME = 0.02
LOUD = 0.01  # RMS, full scale 1: the fake voices are a quiet tone, far above this
GAP = 0.25  # quieter than this long ends a stretch of speech
JOIN_TIMEOUT = 60.0  # connecting and publishing, on a loaded 2-core machine


@dataclass
class Speech:
    """A stretch of one participant's audio: from its first loud frame to its last."""

    identity: str
    start: float
    end: float


@dataclass
class Caption:
    identity: str
    text: str
    at: float  # when the caption stream opened


@dataclass
class Student:
    room: rtc.Room
    identity: str
    source: rtc.AudioSource
    loud: dict[str, list[float]] = field(default_factory=dict)  # identity -> loud frame times
    captions: list[Caption] = field(default_factory=list)
    joined: dict[str, float] = field(default_factory=dict)
    left: dict[str, float] = field(default_factory=dict)
    said: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, wav
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the room disconnected us
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _streams: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _mic: asyncio.Queue[np.ndarray] = field(default_factory=asyncio.Queue)

    # --- what a test reads ---

    def agents(self) -> list[str]:
        """Agent participants in the order they joined."""
        return sorted(self.joined, key=self.joined.__getitem__)

    def agents_present(self) -> list[str]:
        return [
            p.identity
            for p in self.room.remote_participants.values()
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        ]

    def speech(self, identity: str | None = None) -> list[Speech]:
        """Stretches of loud audio, per participant (or all of them, by start)."""
        found = []
        for who, times in self.loud.items():
            if identity is not None and who != identity:
                continue
            start = prev = None
            for t in times:
                if start is None:
                    start = prev = t
                elif t - prev > GAP:  # type: ignore[operator]
                    found.append(Speech(who, start, prev + HEARD_FRAME))  # type: ignore[operator]
                    start = t
                prev = t
            if start is not None:
                found.append(Speech(who, start, prev + HEARD_FRAME))  # type: ignore[operator]
        return sorted(found, key=lambda s: s.start)

    def overlaps(self) -> list[tuple[Speech, Speech]]:
        """Pairs of stretches of two different participants that sound at the same time."""
        stretches = self.speech()
        return [
            (a, b)
            for i, a in enumerate(stretches)
            for b in stretches[i + 1 :]
            if a.identity != b.identity and b.start < a.end - 0.02
        ]

    def captions_of(self, identity: str) -> list[str]:
        return [c.text for c in self.captions if c.identity == identity]

    def caption_from(self, text: str) -> Caption | None:
        return next((c for c in self.captions if text in c.text), None)

    async def wait_for(self, condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
        """Until `condition()` is truthy (checked on every change); fails naming `what`."""
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the student never got: {what}\n{self.report()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
        return result

    async def wait_for_caption(self, text: str, timeout: float = 60.0) -> Caption:
        return await self.wait_for(lambda: self.caption_from(text), timeout, f"caption {text!r}")

    def quiet_since(self, seconds: float) -> bool:
        """No participant was loud in the last `seconds`."""
        last = max((times[-1] for times in self.loud.values() if times), default=0.0)
        return time.monotonic() - last >= seconds

    def report(self) -> str:
        """What the student heard, in time order (for a failing test's message)."""
        t0 = min([*self.joined.values(), *(s for s, _, _ in self.said)], default=0.0)
        events = [(at, f"joined {who}") for who, at in self.joined.items()]
        events += [(at, f"left {who}") for who, at in self.left.items()]
        events += [(s, f"said {wav} until +{e - t0:.2f}") for s, e, wav in self.said]
        events += [(s.start, f"heard {s.identity} until +{s.end - t0:.2f}") for s in self.speech()]
        events += [(c.at, f"caption {c.identity}: {c.text!r}") for c in self.captions]
        return "\n".join(f"  +{at - t0:6.2f} {what}" for at, what in sorted(events))

    # --- speaking ---

    async def say(self, wav_path: Path) -> float:
        """Speak a 48 kHz mono WAV in real time; returns when its last sample has left,
        as a monotonic time (the end of the student's speech)."""
        samples, rate = read_wav(wav_path)
        assert rate == RATE, f"{wav_path}: {RATE} Hz expected"
        done = asyncio.get_running_loop().create_future()
        start = time.monotonic()
        await self._mic.put(samples)
        await self._mic.put(done)  # type: ignore[arg-type]
        end = await done
        self.said.append((start, end, wav_path.name))
        return end

    async def _microphone(self) -> None:
        """Feed the track without a break: speech when there is some, else silence."""
        silence = np.zeros(FRAME, dtype=np.int16)
        while True:
            try:
                item = self._mic.get_nowait()
            except asyncio.QueueEmpty:
                item = None
            if isinstance(item, asyncio.Future):
                item.set_result(time.monotonic() + self.source.queued_duration)
                continue
            chunks = (
                [silence]
                if item is None
                else [item[i : i + FRAME] for i in range(0, len(item) - FRAME + 1, FRAME)]
            )
            for chunk in chunks:
                frame = rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk))
                await self.source.capture_frame(frame)

    # --- listening ---

    def _on_track(
        self,
        track: rtc.Track,
        _publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._streams[track.sid] = self._spawn(self._listen(track, participant.identity))

    def _off_track(
        self,
        track: rtc.Track,
        _publication: rtc.RemoteTrackPublication,
        _participant: rtc.RemoteParticipant,
    ) -> None:
        # a stream left open after its track went can be fed another participant's frames
        if listening := self._streams.pop(track.sid, None):
            listening.cancel()

    async def _listen(self, track: rtc.Track, identity: str) -> None:
        times = self.loud.setdefault(identity, [])
        stream = rtc.AudioStream(
            track, sample_rate=HEARD_RATE, num_channels=1, frame_size_ms=int(HEARD_FRAME * 1000)
        )
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float32)
                if len(samples) and np.sqrt(((samples / 32768.0) ** 2).mean()) > LOUD:
                    times.append(time.monotonic())
                    self.changed.set()
        finally:
            await stream.aclose()

    def _on_caption(self, reader: rtc.TextStreamReader, identity: str) -> None:
        opened = time.monotonic()

        async def read() -> None:
            text = await reader.read_all()
            if text.strip():
                self.captions.append(Caption(identity, text.strip(), opened))
                self.changed.set()

        self._spawn(read())

    def _on_join(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.joined.setdefault(participant.identity, time.monotonic())
            self.changed.set()

    def _on_leave(self, participant: rtc.RemoteParticipant) -> None:
        for publication in participant.track_publications.values():
            if listening := self._streams.pop(publication.sid, None):
                listening.cancel()
        if participant.identity in self.joined:
            self.left[participant.identity] = time.monotonic()
            self.changed.set()

    def _spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def leave(self) -> float:
        """Disconnect; returns the monotonic time the student left."""
        at = time.monotonic()
        await self.room.disconnect()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.source.aclose()
        return at


async def join(url: str, token: str, identity: str) -> Student:
    """Connect, publish a microphone track, and start listening to every agent. A room closed
    while the student joins (`Student.closed` is then set) leaves a student with no
    microphone: the server never answers a publication in a room it has closed."""
    room = rtc.Room()
    source = rtc.AudioSource(RATE, 1, queue_size_ms=50)
    student = Student(room, identity, source)
    room.on("track_subscribed", student._on_track)
    room.on("track_unsubscribed", student._off_track)
    room.on("participant_connected", student._on_join)
    room.on("participant_disconnected", student._on_leave)
    room.on("disconnected", lambda *_: student.closed.set())
    room.register_text_stream_handler("lk.transcription", student._on_caption)
    async with asyncio.timeout(JOIN_TIMEOUT):
        await room.connect(url, token)
    for participant in room.remote_participants.values():
        student._on_join(participant)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publishing = asyncio.ensure_future(room.local_participant.publish_track(track, options))
    closing = asyncio.ensure_future(student.closed.wait())
    done, _ = await asyncio.wait(
        {publishing, closing}, timeout=JOIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    closing.cancel()
    if publishing not in done:
        publishing.cancel()
        if student.closed.is_set():
            return student
        raise TimeoutError(f"{identity}'s microphone was not published in {JOIN_TIMEOUT} s")
    publishing.result()
    student._spawn(student._microphone())
    return student
