"""Spoken turns for turn-taking tests and benchmarks: real children's clips (a directory in
the `clips.tsv` format of `../shared/speech/children`) and the espeak-ng fixtures, each with
its kind, when the speaker is voiced, and the transcript the fake STT gives each side of a
pause (`TurnTranscriber`).

The clips of `../shared/speech/children` are from speechocean762 (Zhang et al., Interspeech
2021), CC BY 4.0: their README holds the attribution that goes with them.
"""

from __future__ import annotations

import csv
import functools
import re
import shlex
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import FIXTURES, REPO, TURN_CLIPS
from harness.realserver import loud_seconds
from harness.wav import read_wav

CHILDREN = REPO.parent / "shared" / "speech" / "children"
FRAME = 0.02  # the clips' analysis frame, as `clips.tsv` was made
PAUSE = 0.3  # a silence this long between voiced frames is a pause (clips.tsv: "complete" < 0.3)
HEARD_LEVEL = 0.003  # RMS: the fake STT hears a segment with voiced audio above this (-50 dBFS)
HEARD_SECONDS = 0.06


@dataclass(frozen=True)
class SpokenTurn:
    """One recorded turn: what it is, when its speaker is voiced, what each side says."""

    path: Path
    kind: str  # complete, paused, quiet, faint (children); "espeak complete" etc.
    parts: tuple[str, ...]  # the transcript of each voiced side of the turn's pauses
    voiced: tuple[tuple[float, float], ...]  # (start, end) seconds into the clip
    seconds: float
    age: int | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def speech_start(self) -> float:
        return self.voiced[0][0]

    @property
    def speech_end(self) -> float:
        return self.voiced[-1][1]

    @property
    def text(self) -> str:
        return " ".join(self.parts)

    @property
    def sounding(self) -> tuple[tuple[float, float], ...]:
        """When the speaker is heard at all (what tutor audio over them is measured
        against): `voiced_stretches` of the clip, split at every pause, not just one."""
        return sounding_of(self.path)

    @property
    def voice(self) -> tuple[tuple[float, float], ...]:
        """When the speaker's voice is heard (`voice_stretches`): each sounding stretch
        from its first pitched moment, so a breath or an "f" before the voice is not in it."""
        return voice_of(self.path)


def children_turns(directory: Path = CHILDREN) -> list[SpokenTurn]:
    """The clips of a directory in the `clips.tsv` format, in its order."""
    index = directory / "clips.tsv"
    if not index.exists():
        raise FileNotFoundError(f"{index}: a speech directory needs its clips.tsv")
    turns = []
    with index.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            start, end = float(row["speech_start"]), float(row["speech_end"])
            pause, at = float(row["longest_pause"] or 0), float(row["pause_at"] or 0)
            words = row["text"].lower().split()
            if row["kind"] == "paused" and pause >= PAUSE and len(words) > 1:
                voiced = ((start, at), (at + pause, end))
                # the words said before the pause, in proportion to the voiced time before it
                share = (at - start) / max(end - start - pause, FRAME)
                cut = min(max(round(share * len(words)), 1), len(words) - 1)
                parts = (" ".join(words[:cut]), " ".join(words[cut:]))
            else:
                voiced, parts = ((start, end),), (" ".join(words),)
            turns.append(
                SpokenTurn(
                    path=directory / row["file"],
                    kind=row["kind"],
                    parts=parts,
                    voiced=voiced,
                    seconds=float(row["seconds"]),
                    age=int(row["age"]) if row.get("age") else None,
                )
            )
    return turns


ESPEAK_KINDS = {"short": "complete", "long": "complete", "pause1": "paused", "pause2": "paused"}


def espeak_turns(directory: Path = TURN_CLIPS) -> list[SpokenTurn]:
    """The espeak-ng fixtures (`harness/fixtures/make_turns.sh` says what each one says)."""
    script = (FIXTURES / "make_turns.sh").read_text()
    turns = []
    for line in script.splitlines():
        if not line.startswith("turn "):
            continue
        name, *pieces = shlex.split(line)[1:]
        path = directory / f"{name}.wav"
        samples, rate = read_wav(path)
        voiced = voiced_stretches(samples, rate)
        parts = tuple(p.rstrip("?,. ").lower() for p in pieces[::2])
        if len(voiced) != len(parts):  # a piece with a pause of its own: one stretch per part
            voiced = ((voiced[0][0], voiced[-1][1]),)
            parts = (" ".join(parts),)
        kind = ESPEAK_KINDS.get(name.split("-")[0], name.split("-")[0])
        turns.append(SpokenTurn(path, f"espeak {kind}", parts, voiced, len(samples) / rate))
    return turns


def frame_levels(samples: np.ndarray, rate: int) -> np.ndarray:
    """RMS (full scale 1) of each 20 ms frame."""
    window = int(rate * FRAME)
    usable = len(samples) // window * window
    frames = samples[:usable].astype(np.float32).reshape(-1, window) / 32768.0
    return np.sqrt((frames**2).mean(axis=1))


@functools.cache
def sounding_of(path: Path) -> tuple[tuple[float, float], ...]:
    """`voiced_stretches` of a WAV, read once per run."""
    return voiced_stretches(*read_wav(path))


def voiced_stretches(samples: np.ndarray, rate: int) -> tuple[tuple[float, float], ...]:
    """Stretches of voiced frames, split by pauses ≥ `PAUSE`. A frame is voiced when it is
    within 30 dB of the loudest and at least 10 dB over the noise floor (the quietest tenth of
    the frames): a quiet child in a noisy room is less than 30 dB over the room."""
    return stretches_of(np.flatnonzero(sounding_frames(samples, rate)))


def sounding_frames(samples: np.ndarray, rate: int) -> np.ndarray:
    """Per 20 ms frame, whether it is within 30 dB of the loudest and 10 dB over the floor."""
    levels = frame_levels(samples, rate)
    if not len(levels) or levels.max() == 0:
        return np.zeros(len(levels), dtype=bool)
    floor = float(np.percentile(levels, 10))
    return levels > max(levels.max() * 10 ** (-30 / 20), floor * 10 ** (10 / 20))


@functools.cache
def voice_of(path: Path) -> tuple[tuple[float, float], ...]:
    """`voice_stretches` of a WAV, read once per run."""
    return voice_stretches(*read_wav(path))


def voice_stretches(samples: np.ndarray, rate: int) -> tuple[tuple[float, float], ...]:
    """Each `voiced_stretches` stretch from the moment the speaker's voice has a pitch in it:
    its first run of two or more sounding frames whose `periodicity` is at least `PITCHED`.
    A breath, a click or an unvoiced consonant ("f", "s") sounds but has no pitch, so the
    stretch starts at the vowel after it; a stretch with no pitch at all (a breath, clicks,
    a whisper) is left out."""
    sounding = sounding_frames(samples, rate)
    pitched = sounding & (periodicity(samples, rate) >= PITCHED)
    padded = np.concatenate([[False], pitched, [False]])
    voice = np.flatnonzero(pitched & (padded[:-2] | padded[2:]))
    stretches = []
    for start, end in stretches_of(np.flatnonzero(sounding)):
        inside = voice[(voice >= round(start / FRAME)) & (voice < round(end / FRAME))]
        if len(inside):
            stretches.append((inside[0] * FRAME, end))
    return tuple(stretches)


PITCHED = 0.6  # a vowel scores 0.8 to 1, a breath or an "f" under 0.4
PITCH_RANGE = (75.0, 600.0)  # Hz: a man's low voice to a young child's high one
PITCH_WINDOW = 0.04  # s: two periods of the lowest pitch


def periodicity(samples: np.ndarray, rate: int) -> np.ndarray:
    """Per 20 ms frame, the highest normalised autocorrelation of the `PITCH_WINDOW` around
    its middle at a lag inside `PITCH_RANGE` (1: a perfectly periodic sound, 0: noise)."""
    hop, width = int(rate * FRAME), int(rate * PITCH_WINDOW)
    shortest, longest = int(rate / PITCH_RANGE[1]), int(rate / PITCH_RANGE[0])
    lags = np.arange(shortest, longest + 1)
    x = samples.astype(np.float64)
    out = np.zeros(len(x) // hop)
    for i in range(len(out)):
        middle = i * hop + hop // 2
        window = x[max(0, middle - width // 2) : middle + width // 2]
        if len(window) < width:
            continue
        window = window - window.mean()
        energy = np.concatenate([[0.0], np.cumsum(window**2)])
        products = np.array([window[:-lag] @ window[lag:] for lag in lags])
        heads = energy[len(window) - lags]  # window[:-lag]
        tails = energy[-1] - energy[lags]  # window[lag:]
        scale = np.sqrt(heads * tails)
        scores = np.divide(products, scale, out=np.zeros_like(products), where=scale > 0)
        out[i] = scores.max()
    return out


def stretches_of(frames: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Runs of frame indices, split by gaps ≥ `PAUSE`, as (start, end) seconds."""
    if not len(frames):
        return ()
    stretches = []
    start = prev = int(frames[0])
    for i in frames[1:]:
        if (i - prev - 1) * FRAME >= PAUSE:
            stretches.append((start * FRAME, (prev + 1) * FRAME))
            start = int(i)
        prev = int(i)
    stretches.append((start * FRAME, (prev + 1) * FRAME))
    return tuple(stretches)


def as_microphone(turn: SpokenTurn, folder: Path, rate: int = 48_000) -> Path:
    """The clip at the microphone's rate (SoX), level unchanged, cached in `folder`."""
    target = folder / f"{re.sub(r'[^A-Za-z0-9_-]+', '-', turn.kind)}-{turn.name}.wav"
    if not target.exists():
        subprocess.run(
            ["sox", "-D", "-R", str(turn.path), "-r", str(rate), "-c", "1", "-b", "16",
             str(target)],
            check=True,
            timeout=60,
        )  # fmt: skip
    return target


class TurnTranscriber:
    """The fake STT for spoken turns. Told when the clip began to play (`expect(turn,
    started)`), a segment is heard as the words the child had said before it reached the
    fake (each part's words spread evenly over its voiced stretch, `LAG` for the way there),
    whatever cut it: a VAD segment, or everything a realtime client committed. A segment with
    no voice is heard as nothing."""

    LAG = 0.25  # s: the VAD's closing silence and the way to the fake

    def __init__(self) -> None:
        self._words: deque[tuple[float, str]] = deque()  # monotonic middle, word
        self.heard: list[str] = []
        self._lock = threading.Lock()

    def expect(self, turn: SpokenTurn, started: float) -> None:
        with self._lock:
            self._words = deque(_timeline(turn, started))

    def expect_words(self, text: str) -> None:
        """The next segment with a voice is heard as `text` (a question said in one go)."""
        with self._lock:
            self._words = deque([(float("-inf"), text)])

    def __call__(self, audio: bytes) -> str:
        if voiced_seconds(audio) < HEARD_SECONDS:
            return ""
        with self._lock:
            said_by = time.monotonic() - self.LAG
            texts = []
            while self._words and self._words[0][0] <= said_by:
                texts.append(self._words.popleft()[1])
            said = " ".join(texts)
            self.heard.append(said)
        return said


def _timeline(turn: SpokenTurn, started: float) -> list[tuple[float, str]]:
    """When the middle of each word of `turn` is said (monotonic), for a clip that began at
    `started`: each part's words evenly over its voiced stretch."""
    timeline = []
    for text, (start, end) in zip(turn.parts, turn.voiced, strict=True):
        words = text.split()
        for k, word in enumerate(words):
            timeline.append((started + start + (k + 0.5) / len(words) * (end - start), word))
    return timeline


def voiced_seconds(audio: bytes) -> float:
    """Seconds of audio above `HEARD_LEVEL` in a WAV (or 24 kHz PCM)."""
    return loud_seconds(audio, threshold=HEARD_LEVEL)
