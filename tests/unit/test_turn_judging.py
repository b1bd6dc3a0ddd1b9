"""How the real-server turn benchmark judges what a child heard: tutor audio inside the child's
silence is a cut-off, only tutor audio over the child's sounding frames is overlap, and only
tutor audio after the child's voice is back (pitched) is overlap over the voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.fakes.production import HEARD_ALL
from harness.speech import CHILDREN, SpokenTurn, voice_stretches, voiced_stretches
from harness.student import HEARD_FRAME, Caption, Student
from harness.turns import judge
from harness.wav import read_wav, write_wav


def clip(path: Path, sounding: list[tuple[float, float]], seconds: float) -> Path:
    """A 16 kHz WAV that is a tone during `sounding` and silent elsewhere."""
    rate = 16_000
    samples = np.zeros(int(seconds * rate), dtype=np.int16)
    for a, b in sounding:
        t = np.arange(int(a * rate), int(b * rate))
        samples[t] = (8000 * np.sin(2 * np.pi * 220 * t / rate)).astype(np.int16)
    return write_wav(path, samples, rate)


def frames(start: float, end: float) -> list[float]:
    count = round((end - start) / HEARD_FRAME)
    return [round(start + i * HEARD_FRAME, 3) for i in range(count)]


def test_tutor_audio_in_a_childs_silence_is_a_cut_off_not_overlap(tmp_path: Path) -> None:
    sounding = [(0.3, 1.0), (2.5, 2.9), (3.3, 3.6)]  # a second silence, 2.9 to 3.3
    turn = SpokenTurn(
        path=clip(tmp_path / "paused.wav", sounding, 4.0),
        kind="paused",
        parts=("what is seven", "times eight"),
        voiced=((0.3, 1.0), (2.5, 3.6)),  # clips.tsv: split at the longest pause only
        seconds=4.0,
    )
    assert [(round(a, 2), round(b, 2)) for a, b in turn.sounding] == sounding
    student = Student(room=None, identity="kid", source=None)  # type: ignore[arg-type]
    # the tutor starts in the second silence and stops 60 ms after the child goes on
    student.loud["tutor"] = frames(3.01, 3.37)
    student.captions.append(
        Caption("tutor", f"You asked: what is seven times eight. {HEARD_ALL}", 5)
    )
    result = judge(student, turn, start=0.0, first_caption=0)
    assert result.cut_off
    assert result.overlap_ms == 60
    assert not result.half_answer and not result.unheard


def test_tutor_audio_over_a_sounding_child_is_overlap(tmp_path: Path) -> None:
    path = clip(tmp_path / "c.wav", [(0.2, 1.5)], 2.0)
    turn = SpokenTurn(path, "complete", ("hello there",), ((0.2, 1.5),), 2.0)
    student = Student(room=None, identity="kid", source=None)  # type: ignore[arg-type]
    student.loud["tutor"] = frames(1.2, 1.8)  # over the child's last 0.3 s
    result = judge(student, turn, start=0.0, first_caption=0)
    assert result.cut_off and result.overlap_ms == 300


def test_a_quiet_child_over_room_noise_is_sounding_only_while_speaking() -> None:
    rate = 16_000
    noise = np.random.default_rng(7).normal(0, 30, 3 * rate)  # the room: about -61 dBFS
    t = np.arange(int(0.5 * rate), int(2.0 * rate))
    voice = np.zeros(3 * rate)
    voice[t] = 1200 * np.sin(2 * np.pi * 220 * t / rate)  # -29 dBFS: 32 dB over the room
    stretches = voiced_stretches((noise + voice).astype(np.int16), rate)
    assert [(round(a, 2), round(b, 2)) for a, b in stretches] == [(0.5, 2.0)]


def test_the_fake_stt_hears_the_words_said_before_a_segment_reached_it_however_it_was_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A realtime client commits whatever it holds, not a VAD segment per side of a pause: the
    fake STT hears each segment as the words the child had said by then."""
    from types import SimpleNamespace

    import harness.speech as speech
    from harness.speech import TurnTranscriber

    now = [100.0]
    monkeypatch.setattr(speech, "time", SimpleNamespace(monotonic=lambda: now[0]))
    path = clip(tmp_path / "turn.wav", [(0.0, 1.0), (2.0, 3.0)], 3.5)
    turn = SpokenTurn(path, "paused", ("jayme needs", "new boots"), ((0.0, 1.0), (2.0, 3.0)), 3.5)
    voice = (np.sin(np.arange(12_000) / 4) * 3000).astype(np.int16).tobytes()  # 0.5 s at 24 kHz
    heard = TurnTranscriber()
    heard.expect(turn, started=100.0)

    now[0] = 100.0 + 0.5 + heard.LAG  # "jayme" said (its middle at 0.25 s), "needs" not yet
    assert heard(voice) == "jayme"
    now[0] = 100.0 + 2.3 + heard.LAG  # the rest of the first side and "new"
    assert heard(voice) == "needs new"
    assert heard(bytes(len(voice))) == ""  # silence is heard as nothing, and keeps the words
    now[0] = 100.0 + 3.5 + heard.LAG
    assert heard(voice) == "boots"


def breath_then_voice(rate: int = 16_000) -> np.ndarray:
    """A breath (noise, 1.0 to 1.4 s), a short gap, then a child's voice (a 260 Hz tone with
    harmonics, 1.5 to 2.5 s), over a quiet room."""
    rng = np.random.default_rng(3)
    samples = rng.normal(0, 10, 3 * rate)
    breath = np.arange(int(1.0 * rate), int(1.4 * rate))
    samples[breath] += rng.normal(0, 600, len(breath))
    voice = np.arange(int(1.5 * rate), int(2.5 * rate))
    for k, level in ((1, 4000), (2, 2000), (3, 1000)):
        samples[voice] += level * np.sin(2 * np.pi * 260 * k * voice / rate)
    return samples.astype(np.int16)


def test_a_breath_before_the_voice_is_sounding_but_not_voice() -> None:
    samples = breath_then_voice()
    assert [(round(a, 2), round(b, 2)) for a, b in voiced_stretches(samples, 16_000)] == [
        (1.0, 2.5)
    ]
    assert [(round(a, 2), round(b, 2)) for a, b in voice_stretches(samples, 16_000)] == [(1.5, 2.5)]


def test_tutor_audio_over_a_breath_is_overlap_but_not_overlap_over_the_voice(
    tmp_path: Path,
) -> None:
    path = write_wav(tmp_path / "breath.wav", breath_then_voice(), 16_000)
    turn = SpokenTurn(path, "paused", ("hello there",), ((1.0, 2.5),), 3.0)
    student = Student(room=None, identity="kid", source=None)  # type: ignore[arg-type]
    student.loud["tutor"] = frames(0.8, 1.76)  # from before the breath to 260 ms into the voice
    result = judge(student, turn, start=0.0, first_caption=0)
    assert result.overlap_ms == 760
    assert result.overlap_voice_ms == 260


def test_clicks_are_never_voice_and_a_girl_breathing_before_fans_is_heard_from_the_vowel() -> None:
    clicks = read_wav(CHILDREN / "faint-6902-069020059.wav")  # four clicks, no speech
    assert voiced_stretches(*clicks) and voice_stretches(*clicks) == ()
    paused = read_wav(CHILDREN / "paused-0070-000700065.wav")  # "... friday | (breath) fans"
    sounding, voice = voiced_stretches(*paused), voice_stretches(*paused)
    assert [round(a, 2) for a, _ in sounding[-2:]] == [4.88, 5.64]  # the breath, the "f"
    assert round(voice[-1][0], 2) == 5.74 and voice[-1][1] == sounding[-1][1]
    assert len(voice) == 3  # the breath alone is not a stretch of voice
