"""Audio fakes with a latency profile: a TTS with a time to first byte that produces audio in
real time, and an audio output that plays frames at real-time pace and timestamps every
utterance (first frame played, last frame played)."""

from __future__ import annotations

import array
import asyncio
import itertools
import time
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import APIConnectOptions, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.voice import io

SAMPLE_RATE = 24_000
MARK_BASE = 1000
CHUNK_SECONDS = 0.05
_ids = itertools.count(1)


class PacedTTS(tts.TTS):
    """Silence of `seconds_per_char * len(text)`, first chunk after `ttfb`, then produced
    `speedup` times faster than real time (1.0: real time).

    `spoken` records every synthesized text (to tell whose voice said what). With `marked`,
    every sample of the audio of `spoken[i]` is `MARK_BASE + i`, so an output that records
    the marks it played can tell which texts reached the speaker.
    """

    def __init__(
        self,
        *,
        ttfb: float = 0.15,
        seconds_per_char: float = 0.06,
        speedup: float = 1.0,
        name: str = "tts",
        marked: bool = False,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self.ttfb = ttfb
        self.seconds_per_char = seconds_per_char
        self.speedup = speedup
        self.name = name
        self.marked = marked
        self.spoken: list[str] = []

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.spoken.append(text)
        return _PacedStream(tts=self, input_text=text, conn_options=conn_options)


class _PacedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        fake: PacedTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(
            request_id=f"tts_{next(_ids)}",
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        await asyncio.sleep(fake.ttfb)
        remaining = max(CHUNK_SECONDS, len(self._input_text.strip()) * fake.seconds_per_char)
        samples = int(SAMPLE_RATE * CHUNK_SECONDS)
        chunk = bytes(samples * 2)
        if fake.marked:
            mark = MARK_BASE + fake.spoken.index(self._input_text)
            chunk = array.array("h", [mark] * samples).tobytes()
        while remaining > 0:
            output_emitter.push(chunk)
            remaining -= CHUNK_SECONDS
            if remaining > 0:
                await asyncio.sleep(CHUNK_SECONDS / fake.speedup)
        output_emitter.flush()


@dataclass
class Utterance:
    started: float  # monotonic time the first frame played
    ended: float | None = None
    interrupted: bool = False


@dataclass
class PlaybackLog:
    utterances: list[Utterance] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def played(self, count: int, timeout: float = 30.0) -> list[Utterance]:
        """Wait until `count` utterances have finished playing; return them all."""

        def done() -> bool:
            return sum(u.ended is not None for u in self.utterances) >= count

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(done)
        return self.utterances

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class RealtimeAudioOutput(io.AudioOutput):
    """Plays captured frames at real-time pace (one segment per flush) and logs them."""

    def __init__(self, log: PlaybackLog | None = None) -> None:
        super().__init__(
            label="realtime-fake",
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=None,
        )
        self.log = log or PlaybackLog()
        self._current: Utterance | None = None
        self._pushed = 0.0
        self._finish: asyncio.Task[None] | None = None
        self._cleared = asyncio.Event()
        self.marks: set[int] = set()  # first sample of every frame (see PacedTTS's marks)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if frame.samples_per_channel:
            self.marks.add(int(memoryview(frame.data)[0]))
        if self._current is None:
            self._current = Utterance(started=time.monotonic())
            self.log.utterances.append(self._current)
            self._cleared.clear()
            self.on_playback_started(created_at=time.time())
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._current is None:
            return
        utterance, pushed = self._current, self._pushed
        self._current, self._pushed = None, 0.0
        self._finish = asyncio.create_task(self._play_out(utterance, pushed))

    def clear_buffer(self) -> None:
        self._cleared.set()

    async def _play_out(self, utterance: Utterance, pushed: float) -> None:
        remaining = utterance.started + pushed - time.monotonic()
        try:
            await asyncio.wait_for(self._cleared.wait(), timeout=max(0.0, remaining))
            utterance.interrupted = True
        except TimeoutError:
            pass  # played to the end, like a speaker would
        utterance.ended = time.monotonic()
        played = min(pushed, utterance.ended - utterance.started)
        self.on_playback_finished(playback_position=played, interrupted=utterance.interrupted)
        await self.log._notify()
