"""Fixed lines cost no synthesis: each (voice, line) is synthesised once per machine."""

from __future__ import annotations

from pathlib import Path

from livekit import rtc

from agent.config.roster import default_roster
from agent.conversation.lines import LineCache, handoff_lines, warm_lines
from harness.fakes.audio import PacedTTS
from harness.rosters import ANNOUNCEMENTS

LINE = ANNOUNCEMENTS["math"]


def kept(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wav"))


async def play(cache: LineCache, voice: PacedTTS, text: str) -> list[rtc.AudioFrame]:
    return [frame async for frame in cache.frames(voice, text)]


async def test_a_line_is_synthesised_once_and_then_played_from_the_cache(tmp_path: Path) -> None:
    voice = PacedTTS(ttfb=0.0, speedup=50.0, marked=True, name="coral")
    first = await play(LineCache(tmp_path), voice, LINE)
    # another job process on the same machine: a new cache over the same directory
    again = await play(LineCache(tmp_path), voice, LINE)
    assert voice.spoken == [LINE]  # synthesised once
    assert b"".join(bytes(f.data) for f in again) == b"".join(bytes(f.data) for f in first)
    assert again[0].sample_rate == first[0].sample_rate


async def test_each_voice_and_line_has_its_own_audio(tmp_path: Path) -> None:
    cache = LineCache(tmp_path)
    coral = PacedTTS(ttfb=0.0, speedup=50.0, marked=True, name="coral")
    sage = PacedTTS(ttfb=0.0, speedup=50.0, marked=True, name="sage")
    await play(cache, coral, LINE)
    await play(cache, sage, LINE)
    await play(cache, coral, ANNOUNCEMENTS["history"])
    assert coral.spoken == [LINE, ANNOUNCEMENTS["history"]] and sage.spoken == [LINE]
    assert len(kept(tmp_path)) == 3


async def test_a_damaged_cached_line_is_synthesised_again(tmp_path: Path) -> None:
    voice = PacedTTS(ttfb=0.0, speedup=50.0, name="coral")
    await play(LineCache(tmp_path), voice, LINE)
    [cached] = kept(tmp_path)
    cached.write_bytes(b"not a wav")
    frames = await play(LineCache(tmp_path), voice, LINE)
    assert frames and voice.spoken == [LINE, LINE]


async def test_without_a_cache_every_use_is_synthesised() -> None:
    voice = PacedTTS(ttfb=0.0, speedup=50.0, name="coral")
    cache = LineCache(None, keep=False)
    await play(cache, voice, LINE)
    await play(cache, voice, LINE)
    assert voice.spoken == [LINE, LINE]


async def test_a_worker_prepares_every_handoff_line_its_tutors_can_say_once(
    tmp_path: Path,
) -> None:
    roster = default_roster()
    lines = handoff_lines(roster, roster.tutors)
    # the orchestrator announces every tutor in its own voice; Math its routes and the way back
    voice_of = {kind: spec.voice for kind, spec in roster.tutors.items()}
    assert (voice_of["orchestrator"], roster.tutor("math").handoff_line) in lines
    assert (voice_of["math"], roster.tutor("english").handoff_line) in lines
    assert (voice_of["math"], roster.tutor("orchestrator").handoff_line) in lines
    assert (voice_of["orchestrator"], roster.tutor("orchestrator").handoff_line) not in lines
    voices = {v: PacedTTS(ttfb=0.0, speedup=50.0, marked=True, name=v) for v, _ in lines}
    assert await warm_lines(LineCache(tmp_path), voices, lines) == len(lines)
    # every job process after it plays them from the cache: nothing left to synthesise
    assert await warm_lines(LineCache(tmp_path), voices, lines) == 0
    assert sum(len(v.spoken) for v in voices.values()) == len(lines)
    assert len(kept(tmp_path)) == len(lines)
