"""The held-out clip set (`harness.speech_set`): cut from a speechocean762-shaped corpus, each
clip of the right kind, only children, none of an excluded set's children, and readable as
spoken turns by the bench."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import TURN_CLIPS
from harness.speech import children_turns
from harness.speech_set import main
from harness.wav import read_wav, write_wav

RATE = 16_000


def write(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, samples, RATE)


def clicks() -> np.ndarray:
    """Two seconds of silence with four clicks: loud frames, and no speech."""
    samples = np.zeros(2 * RATE)
    for k in range(4):
        at = int((0.5 + 0.25 * k) * RATE)
        samples[at : at + 40] = 12_000
    return samples


def corpus(root: Path) -> Path:
    """Speakers: 0001 (6) fluent and paused, 0002 (7) very quiet, 0003 an adult, 0004 (8)
    clicks only, 0005 (9) a child of the excluded set."""
    speech = {name: read_wav(TURN_CLIPS / f"{name}.wav")[0] for name in ("short-1", "pause1-1")}
    recordings = {
        "000010001": ("0001", speech["short-1"]),
        "000010002": ("0001", speech["pause1-1"]),
        "000020001": ("0002", speech["short-1"] * 10 ** (-24 / 20)),
        "000030001": ("0003", speech["short-1"]),
        "000040001": ("0004", clicks()),
        "000050001": ("0005", speech["short-1"]),
    }
    ages = {"0001": 6, "0002": 7, "0003": 30, "0004": 8, "0005": 9}
    for utterance, (speaker, samples) in recordings.items():
        write(root / f"WAVE/SPEAKER{speaker}/{utterance}.WAV", samples)
    train = root / "train"
    train.mkdir()
    (train / "wav.scp").write_text(
        "".join(f"{u} WAVE/SPEAKER{s}/{u}.WAV\n" for u, (s, _) in recordings.items())
    )
    (train / "utt2spk").write_text("".join(f"{u} {s}\n" for u, (s, _) in recordings.items()))
    (train / "text").write_text("".join(f"{u} WHAT IS SEVEN TIMES EIGHT\n" for u in recordings))
    (train / "spk2age").write_text("".join(f"{s} {a}\n" for s, a in ages.items()))
    (train / "spk2gender").write_text("".join(f"{s} f\n" for s in ages))
    (root / "test").mkdir()
    for name in ("wav.scp", "utt2spk", "text", "spk2age", "spk2gender"):
        (root / "test" / name).write_text("")
    return root


def test_a_held_out_set_has_each_kind_only_children_and_none_of_the_excluded_ones(
    tmp_path: Path,
) -> None:
    source = corpus(tmp_path / "corpus")
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "clips.tsv").write_text("file\tkind\tspeaker\nx.wav\tcomplete\t0005\n")
    out = tmp_path / "held-out"

    assert main([str(source), str(out), "--exclude", str(tuned)]) == 0

    turns = {t.name: t for t in children_turns(out)}
    assert {name: t.kind for name, t in turns.items()} == {
        "complete-0001-000010001": "complete",
        "paused-0001-000010002": "paused",
        "quiet-0002-000020001": "quiet",
        "faint-0004-000040001": "faint",
    }
    # the paused clip is heard as two parts, each side of its pause
    assert len(turns["paused-0001-000010002"].parts) == 2
    # cut to a quarter second around the speech, level unchanged
    complete = turns["complete-0001-000010001"]
    assert abs(complete.speech_start - 0.25) < 0.03
    assert abs(complete.seconds - complete.speech_end - 0.25) < 0.03
    original = read_wav(TURN_CLIPS / "short-1.wav")[0]
    assert np.abs(read_wav(complete.path)[0]).max() == np.abs(original).max()
    assert "CC BY 4.0" in (out / "README.md").read_text()
