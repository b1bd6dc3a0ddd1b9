"""Simulated audio for benchmarks: a student on a real-time clock, a real-time speaker sink,
and an STT stand-in that costs what the framework around them costs (no model work).

- `SimStudent` is the microphone: an `AudioInput` that releases one frame per frame duration
  on a fixed schedule (like RoomIO's 24 kHz, 50 ms frames from a remote track). It asks the
  recorded question, then sends silence until the tutor's answer has finished playing, pauses,
  and asks again.
- `RealtimeSink` is the speaker: an `AudioOutput` that plays each captured frame for its
  duration and reports playback started/finished as a real sink does.
- `FixedTranscriptSTT` is a non-streaming STT (like OpenAI's transcription endpoint), so the
  framework wraps it in a VAD `StreamAdapter` exactly as in production.
(The TTS stand-in is `harness.fakes.audio.PacedTTS`, shared with the handoff benchmark.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.voice import io

from harness.wav import read_wav

_request_ids = itertools.count(1)


# ---------------------------------------------------------------------------- the recording


@dataclass(frozen=True)
class Clip:
    """Mono 16-bit PCM and where the speech in it ends (seconds from the start)."""

    pcm: np.ndarray  # int16
    sample_rate: int
    speech_end: float

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


def load_clip(path: Path, *, sample_rate: int, threshold: float = 0.02) -> Clip:
    """Read a mono 16-bit WAV, resampled to `sample_rate` (once, here)."""
    pcm, rate = read_wav(path)
    speech_end = _speech_end(pcm, rate, threshold)
    if rate != sample_rate:
        pcm = _resample(pcm, rate, sample_rate)
    return Clip(pcm=pcm, sample_rate=sample_rate, speech_end=speech_end)


def _speech_end(pcm: np.ndarray, rate: int, threshold: float) -> float:
    """End of the last 10 ms window louder than `threshold` (RMS, full scale = 1)."""
    window = rate // 100
    usable = len(pcm) // window * window
    windows = pcm[:usable].astype(np.float32).reshape(-1, window) / 32768.0
    loud = np.flatnonzero(np.sqrt((windows**2).mean(axis=1)) > threshold)
    if not len(loud):
        raise ValueError("no speech found in the clip")
    return (int(loud[-1]) + 1) * window / rate


def _resample(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    resampler = rtc.AudioResampler(input_rate=rate, output_rate=target, num_channels=1)
    frame = rtc.AudioFrame(pcm.tobytes(), rate, 1, len(pcm))
    frames = [*resampler.push(frame), *resampler.flush()]
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


# ------------------------------------------------------------------------- the microphone


@dataclass
class StudentStats:
    """What one simulated student did and heard during the talk window."""

    questions: int = 0  # questions whose speech ended inside the window
    answered: int = 0  # of those, how many got an answer that started playing
    greeted: bool = False
    answer_latencies: list[float] = field(default_factory=list)  # speech end -> answer audio
    question_ends: list[float] = field(default_factory=list)  # monotonic time each ended
    frame_lateness: list[float] = field(default_factory=list)  # how late frames were pulled


class SimStudent(io.AudioInput):
    """A student speaking into a microphone, in real time, taking turns with the tutor.

    Frame k is released at `t0 + k * frame duration` (never earlier). The student first waits
    for the tutor's greeting, then asks `clip`, then waits until an answer has finished
    playing on `sink` (or `answer_timeout` after the question, then asks again), pauses
    `pause` seconds (`first_pause` more before the first question, to spread the turns of
    concurrent students), and so on, up to `max_questions`. `talk_done` is set once
    `talk_seconds` of audio were sent; after that the student stays silent but the
    microphone keeps sending silence.
    """

    def __init__(
        self,
        clip: Clip,
        sink: RealtimeSink,
        *,
        talk_seconds: float,
        frame_ms: int = 50,
        pause: float = 0.5,
        first_pause: float = 0.0,
        answer_timeout: float = 8.0,
        max_questions: int | None = None,
    ) -> None:
        super().__init__(label="SimStudent")
        self._max_questions = max_questions
        self._asked = 0
        self._clip = clip
        self._frame_samples = clip.sample_rate * frame_ms // 1000
        self._frame_duration = self._frame_samples / clip.sample_rate
        self._talk_frames = round(talk_seconds / self._frame_duration)
        self._pause_frames = round(pause / self._frame_duration)
        self._first_pause_frames = round(first_pause / self._frame_duration)
        self._answer_timeout = answer_timeout
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self.stats = StudentStats()
        self.talk_done = asyncio.Event()
        self.answered = asyncio.Event()  # an answer started playing
        self._t0: float | None = None
        self._k = 0  # next frame index
        self._clip_pos: int | None = None  # sample offset while asking
        self._waiting_since: float | None = 0.0  # audio time the tutor's turn began
        self._hearing = False  # an answer (or the greeting) is playing
        self._next_ask: int | None = None  # frame index of the next question
        sink.on("playback_started", self._on_playback_started)
        sink.on("playback_finished", self._on_playback_finished)

    def begin(self) -> None:
        """Start the clock (the first frame is due now)."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    async def __anext__(self) -> rtc.AudioFrame:
        self.begin()
        assert self._t0 is not None
        due = self._t0 + self._k * self._frame_duration
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._k < self._talk_frames:
            self.stats.frame_lateness.append(max(0.0, time.monotonic() - due))
        elif self._k == self._talk_frames:
            self.talk_done.set()  # the first frame after the talk is due: talk_seconds passed
        samples = self._next_samples()
        self._k += 1
        return rtc.AudioFrame(samples.tobytes(), self._clip.sample_rate, 1, self._frame_samples)

    def _now(self) -> float:
        """The current audio time: where frame k sits on the schedule."""
        return self._k * self._frame_duration

    def _next_samples(self) -> np.ndarray:
        if self._clip_pos is None:
            self._maybe_start_question()
        if self._clip_pos is None:
            return self._silence
        start = self._clip_pos
        chunk = self._clip.pcm[start : start + self._frame_samples]
        self._clip_pos = start + self._frame_samples
        speech_end = round(self._clip.speech_end * self._clip.sample_rate)
        if start < speech_end <= self._clip_pos:
            self._question_ended(self._now() + (speech_end - start) / self._clip.sample_rate)
        if self._clip_pos >= len(self._clip.pcm):
            self._clip_pos = None
        if len(chunk) < self._frame_samples:
            chunk = np.concatenate([chunk, self._silence[len(chunk) :]])
        return chunk

    def _maybe_start_question(self) -> None:
        in_talk = self._k < self._talk_frames
        timed_out = (
            self._waiting_since is not None
            and not self._hearing
            and self._now() - self._waiting_since > self._answer_timeout
        )
        due = self._next_ask is not None and self._k >= self._next_ask
        allowed = self._max_questions is None or self._asked < self._max_questions
        if in_talk and allowed and (due or timed_out):
            self._asked += 1
            self._next_ask = None
            self._waiting_since = None
            self._clip_pos = 0

    def _question_ended(self, at: float) -> None:
        if self._k < self._talk_frames:
            self.stats.questions += 1
        self._waiting_since = at
        if self._t0 is not None:
            self.stats.question_ends.append(self._t0 + at)

    def _on_playback_started(self, ev: io.PlaybackStartedEvent) -> None:
        if self._waiting_since is None or self._hearing or self._t0 is None:
            return
        self._hearing = True
        if self.stats.questions == 0 and not self.stats.greeted:
            self.stats.greeted = True
            return
        if self._k <= self._talk_frames:
            self.stats.answered += 1
            spoke_at = self._t0 + self._waiting_since
            self.stats.answer_latencies.append(time.monotonic() - spoke_at)
            self.answered.set()

    def _on_playback_finished(self, ev: io.PlaybackFinishedEvent) -> None:
        if not self._hearing:
            return
        self._hearing = False
        self._waiting_since = None
        first = self._first_pause_frames if self.stats.questions == 0 else 0
        self._next_ask = self._k + self._pause_frames + first


# ---------------------------------------------------------------------------- the speaker


@dataclass(frozen=True)
class _SegmentEnd:
    pass


class RealtimeSink(io.AudioOutput):
    """Plays captured audio in real time: each frame takes its duration to play.

    Same contract as RoomIO's output: `capture_frame` may run ahead of playback, `flush`
    ends a segment, whose `playback_finished` comes once it has played out; `clear_buffer`
    drops what has not played and finishes the segment as interrupted; pause holds the
    playhead.

    `underruns` lists the silences inside a segment (seconds): a frame captured after the
    audio captured before it would have finished playing, on a playhead that runs from the
    capture times alone (as the native audio source's buffer plays, however late this
    process's own player task runs).
    """

    def __init__(self, *, sample_rate: int = 24000) -> None:
        super().__init__(
            label="RealtimeSink",
            capabilities=io.AudioOutputCapabilities(pause=True),
            sample_rate=sample_rate,
        )
        self._queue: asyncio.Queue[rtc.AudioFrame | _SegmentEnd] = asyncio.Queue()
        self._playing = asyncio.Event()
        self._playing.set()
        self._generation = 0  # bumped by clear_buffer: frames of older generations are dropped
        self._segment_open = False  # frames captured and not yet flushed
        self._unfinished = 0  # flushed segments whose playback_finished is still due
        self._interrupt_next = False
        self._played = 0.0
        self._started = False
        self._player: asyncio.Task[None] | None = None
        self.played_seconds = 0.0
        self.underruns: list[float] = []
        self._buffered_until = 0.0  # when the audio captured so far would have played out
        self._continuing = False  # a frame of this segment was captured and not cleared
        self._paused_at: float | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._player is None:
            self._player = asyncio.create_task(self._play(), name="RealtimeSink._play")
        now = time.monotonic()
        if self._continuing and self._paused_at is None and now > self._buffered_until:
            self.underruns.append(now - self._buffered_until)
        self._buffered_until = max(self._buffered_until, now) + frame.duration
        self._continuing = True  # the next frame continues this segment's audio
        self._segment_open = True
        self._queue.put_nowait(frame)

    def flush(self) -> None:
        super().flush()
        self._continuing = False
        if not self._segment_open:
            return
        self._segment_open = False
        self._unfinished += 1
        self._queue.put_nowait(_SegmentEnd())

    def clear_buffer(self) -> None:
        dropped_end = False
        while not self._queue.empty():
            dropped_end |= isinstance(self._queue.get_nowait(), _SegmentEnd)
        self._generation += 1
        self._continuing = False  # nothing left to play: the next frame starts afresh
        if dropped_end:
            self._finish(interrupted=True)
        elif self._segment_open:
            self._interrupt_next = True

    def pause(self) -> None:
        super().pause()
        self._playing.clear()
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        super().resume()
        self._playing.set()
        if self._paused_at is not None:  # the buffered audio waited, it did not play
            self._buffered_until += time.monotonic() - self._paused_at
            self._paused_at = None

    async def aclose(self) -> None:
        if self._player is not None:
            await utils.aio.cancel_and_wait(self._player)

    async def _play(self) -> None:
        clock = time.monotonic()
        while True:
            item = await self._queue.get()
            if isinstance(item, _SegmentEnd):
                self._finish(interrupted=self._interrupt_next)
                continue
            await self._playing.wait()
            generation = self._generation
            if not self._started:
                self._started = True
                self.on_playback_started(created_at=time.time())
            clock = max(clock, time.monotonic()) + item.duration
            await asyncio.sleep(clock - time.monotonic())
            if generation == self._generation:
                self._played += item.duration
                self.played_seconds += item.duration

    def _finish(self, *, interrupted: bool) -> None:
        if not self._unfinished:
            return
        self._unfinished -= 1
        played, self._played = self._played, 0.0
        self._started = False
        self._interrupt_next = False
        self.on_playback_finished(playback_position=played, interrupted=interrupted)


# ------------------------------------------------------------------------ STT and TTS fakes


class FixedTranscriptSTT(stt.STT):
    """Non-streaming STT: each utterance the VAD cuts out is "transcribed" as `transcript`."""

    def __init__(self, transcript: str, *, latency: float = 0.2) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._transcript = transcript
        self._latency = latency
        self.recognized = 0

    @property
    def model(self) -> str:
        return "fixed-transcript"

    @property
    def provider(self) -> str:
        return "bench"

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        await asyncio.sleep(self._latency)
        self.recognized += 1
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=f"stt-{next(_request_ids)}",
            alternatives=[stt.SpeechData(language="en", text=self._transcript, confidence=1.0)],
        )
