"""Fixed lines cost no synthesis: each (voice, line) is synthesised once and kept.

Handoff lines, the safeguarding response, the redirect and sorry lines are fixed text in a
known voice. The first time one is needed its audio is synthesised (and played as it
arrives) and written to `LINE_CACHE_DIR` as a WAV file; from then on every job process on the
machine plays it from there, so the time to the line is the router's first token alone.
Fixed lines are ours: no child's words are ever cached.

Audio can also be synthesised ahead of its turn to play (`Prefetched`, `AudioPrefetch`): a
handoff line from the moment the handoff is decided, a reply's sentence while moderation
checks it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
import wave
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path

from livekit import rtc
from livekit.agents import Agent, tts
from livekit.agents.voice import ModelSettings

from agent.config.roster import ORCHESTRATOR, Roster
from agent.framework import voice_options

logger = logging.getLogger("tutor.lines")

FRAME_SECONDS = 0.05


def voice_key(voice: tts.TTS) -> str:
    """What makes one TTS sound different from another: provider, model, voice, format."""
    options = voice_options(voice)
    name = getattr(options, "voice", None) or getattr(voice, "name", None) or f"id{id(voice)}"
    return f"{voice.provider}|{voice.model}|{name}|{voice.sample_rate}|{voice.num_channels}"


def _line_key(voice: tts.TTS, text: str) -> str:
    return f"{voice_key(voice)}|{text}"


class LineCache:
    """Audio of fixed lines, in memory and (if `directory`) on disk for every process."""

    def __init__(self, directory: Path | None, *, keep: bool = True) -> None:
        self.directory = directory
        self.keep = keep  # False: synthesise every time (no worker set a cache up)
        self._memory: dict[str, list[rtc.AudioFrame]] = {}
        self.synthesised = 0  # lines this process had to synthesise

    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.wav"

    def cached(self, voice: tts.TTS, text: str) -> list[rtc.AudioFrame] | None:
        if not self.keep:
            return None
        key = _line_key(voice, text)
        if (frames := self._memory.get(key)) is not None:
            return frames
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            frames = _read_wav(path)
        except (OSError, wave.Error, EOFError):
            logger.warning("unreadable cached line %s, synthesising it again", path.name)
            return None
        self._memory[key] = frames
        return frames

    async def frames(self, voice: tts.TTS, text: str) -> AsyncIterator[rtc.AudioFrame]:
        """The line's audio: cached, or synthesised now (played as it comes) and kept."""
        if (cached := self.cached(voice, text)) is not None:
            for frame in cached:
                yield frame
            return
        self.synthesised += 1
        made: list[rtc.AudioFrame] = []
        async with voice.synthesize(text) as stream:
            async for chunk in stream:
                made.append(chunk.frame)
                yield chunk.frame
        if not self.keep:
            return
        key = _line_key(voice, text)
        self._memory[key] = made
        path = self._path(key)
        if path is not None and made:
            try:
                _write_wav(path, made)
            except OSError as exc:
                logger.warning("could not keep a line's audio: %s", type(exc).__name__)


def _write_wav(path: Path, frames: list[rtc.AudioFrame]) -> None:
    """Write atomically: a process reading it never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(handle, "wb") as raw, wave.open(raw, "wb") as out:
        out.setnchannels(frames[0].num_channels)
        out.setsampwidth(2)
        out.setframerate(frames[0].sample_rate)
        for frame in frames:
            out.writeframes(bytes(frame.data))
    os.replace(partial, path)


def _read_wav(path: Path) -> list[rtc.AudioFrame]:
    with wave.open(str(path), "rb") as source:
        rate, channels = source.getframerate(), source.getnchannels()
        step = int(rate * FRAME_SECONDS)
        frames = []
        while data := source.readframes(step):
            samples = len(data) // (2 * channels)
            frames.append(rtc.AudioFrame(data, rate, channels, samples))
    if not frames:
        raise EOFError("empty")
    return frames


_default: LineCache | None = None


def handoff_lines(roster: Roster, speakers: Iterable[str]) -> list[tuple[str, str]]:
    """(voice, text) of every handoff line the `speakers` can say: each tutor they can hand
    the student to, in the speaker's own voice (the outgoing tutor announces)."""
    pairs: dict[tuple[str, str], None] = {}
    for kind in speakers:
        for target in [*roster.routes_of(kind), ORCHESTRATOR]:
            if target != kind:
                pairs[(roster.tutor(kind).voice, roster.tutor(target).handoff_line)] = None
    return list(pairs)


async def warm_lines(
    cache: LineCache, voices: Mapping[str, tts.TTS], lines: Iterable[tuple[str, str]]
) -> int:
    """Synthesise into `cache` each (voice, text) it does not hold yet; returns how many.
    A line that fails is left for its first use (a warning, never an error)."""
    made = 0
    for voice_name, text in lines:
        voice = voices[voice_name]
        if cache.cached(voice, text) is not None:
            continue
        try:
            async for _ in cache.frames(voice, text):
                pass
            made += 1
        except Exception as exc:
            logger.warning("could not prepare a fixed line: %s", type(exc).__name__)
    return made


def line_cache() -> LineCache:
    """This process's cache (the directory from `LINE_CACHE_DIR`; see `set_line_cache`)."""
    global _default
    if _default is None:
        _default = LineCache(None, keep=False)
    return _default


def set_line_cache(cache: LineCache) -> None:
    """Called once per process by the worker's prewarm."""
    global _default
    _default = cache


# ------------------------------------------------ audio synthesised ahead of its turn


def speech_key(text: str) -> str:
    """Text as the TTS node may see it after the framework's markdown/emoji filters."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


class Prefetched:
    """The audio of one line, synthesised ahead of its turn to play (while it is checked,
    or while the tutor before it still speaks)."""

    def __init__(self, frames: AsyncIterable[rtc.AudioFrame]) -> None:
        self._queue: asyncio.Queue[rtc.AudioFrame | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(frames))

    async def _pump(self, frames: AsyncIterable[rtc.AudioFrame]) -> None:
        try:
            async for frame in frames:
                self._queue.put_nowait(frame)
        finally:
            self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[rtc.AudioFrame]:
        while (frame := await self._queue.get()) is not None:
            yield frame
        await self._task  # re-raise a synthesis error

    def cancel(self) -> None:
        self._task.cancel()


class AudioPrefetch:
    """Sentences synthesised ahead of their release, for the tutor's TTS node to play."""

    def __init__(self) -> None:
        self._ready: dict[str, list[Prefetched]] = {}
        self._all: list[Prefetched] = []

    def start(self, tutor: Agent, text: str, model_settings: ModelSettings) -> Prefetched:
        prefetched = Prefetched(Agent.default.tts_node(tutor, one_chunk(text), model_settings))
        self._all.append(prefetched)
        return prefetched

    def release(self, text: str, prefetched: Prefetched) -> None:
        self._ready.setdefault(speech_key(text), []).append(prefetched)

    def take(self, text: str) -> Prefetched | None:
        waiting = self._ready.get(speech_key(text))
        if not waiting:
            return None
        prefetched = waiting.pop(0)
        self._all.remove(prefetched)  # the TTS node plays it now: no longer ours to cancel
        return prefetched

    def discard(self) -> None:
        """Cancel what a previous reply prefetched and never played (it was interrupted,
        or nothing played it); audio already being played is left to finish."""
        for prefetched in self._all:
            prefetched.cancel()
        self._all.clear()
        self._ready.clear()


async def one_chunk(text: str) -> AsyncIterator[str]:
    """`text` as a text stream of one chunk (what a TTS node reads)."""
    yield text


def prefetch_line(voice: tts.TTS, text: str) -> Prefetched:
    """Start a fixed line's audio now (cached once per machine), to play it later."""
    return Prefetched(line_cache().frames(voice, text))
