"""A held-out set of children's clips in the `clips.tsv` format of `../shared/speech/children`,
cut from a speechocean762 checkout (github.com/jimbozhang/speechocean762: `WAVE/`, and
`train/` and `test/` with `spk2age`, `spk2gender`, `text`), from children none of whose
clips are in the sets given with `--exclude`. Turn-taking is tuned on one set and checked on
this one:

    uv run python -m harness.speech_set CORPUS build/held-out --exclude ../shared/speech/children
    ../shared/livekit-server/in-netns.sh uv run python -m bench turns --real-server \\
        --speech build/held-out

Each clip is cut 0.25 s before its first and after its last voiced frame (20 ms frames within
30 dB of the clip's loudest and 10 dB over its noise floor, as
`harness.speech.voiced_stretches`), level unchanged.
Kinds: `paused` has a silence of 0.45 s or more inside the sentence, `complete` none of 0.3 s;
`quiet` are the complete clips of the lowest level (loud frames under -27 dBFS); `faint` are
clips in which Silero at activation 0.5 hears no speech at all. At most one clip per child and
kind: a paused child's longest pause, a quiet child's lowest level, the longest pauses and
lowest levels first. The clips are CC BY 4.0: the set's README says so.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.speech import frame_levels, voiced_stretches
from harness.wav import read_wav, write_wav

MARGIN = 0.25  # s kept before the first and after the last voiced frame
PAUSED = 0.45  # a silence this long inside the sentence: the child is not done
QUIET_DBFS = -27.0
CHILD = 12  # the oldest age counted as a child
WANTED = {"complete": 24, "paused": 16, "quiet": 6, "faint": 3}
COLUMNS = ["file", "kind", "speaker", "age", "gender", "seconds", "speech_start", "speech_end",
           "longest_pause", "pause_at", "loud_frame_dbfs", "text"]  # fmt: skip

ATTRIBUTION = """# Held-out children's clips

Cut by `python -m harness.speech_set` from the public corpus **speechocean762** (Zhang et al.,
"speechocean762: An Open-Source Non-native English Speech Corpus For Pronunciation
Assessment", Interspeech 2021; github.com/jimbozhang/speechocean762), released under the
**Creative Commons Attribution 4.0 International** licence (CC BY 4.0). What was changed: each
recording was cut to 0.25 s before its first and after its last voiced 20 ms frame; nothing
else (16 kHz, mono, 16-bit, original level). Keep this attribution with the clips.
`clips.tsv` has the columns of `../shared/speech/children/clips.tsv`.
"""


@dataclass
class Clip:
    utterance: str
    speaker: str
    age: int
    gender: str
    text: str
    samples: np.ndarray
    rate: int
    kind: str = ""

    def __post_init__(self) -> None:
        self.stretches = voiced_stretches(self.samples, self.rate)
        levels = frame_levels(self.samples, self.rate)
        loud = float(np.percentile(levels, 99)) if len(levels) else 0.0
        self.loud_dbfs = 20 * np.log10(max(loud, 1e-6))
        pairs = zip(self.stretches, self.stretches[1:], strict=False)
        gaps = [(b[0] - a[1], a[1]) for a, b in pairs]
        self.pause, self.pause_at = max(gaps) if gaps else (0.0, 0.0)

    def cut(self) -> tuple[np.ndarray, float]:
        """The samples from `MARGIN` before the speech to `MARGIN` after, and where they begin."""
        begin = max(self.stretches[0][0] - MARGIN, 0.0)
        end = self.stretches[-1][1] + MARGIN
        return self.samples[int(begin * self.rate) : int(end * self.rate)], begin


def corpus_children(corpus: Path, excluded: set[str]) -> list[Clip]:
    """Every recording of a child (age ≤ `CHILD`) whose speaker is not in `excluded`."""
    ages, genders, texts, paths, speakers = {}, {}, {}, {}, {}
    for part in ("train", "test"):
        folder = corpus / part
        speakers |= _table(folder / "utt2spk")
        ages |= _table(folder / "spk2age")
        genders |= _table(folder / "spk2gender")
        texts |= _table(folder / "text")
        paths |= _table(folder / "wav.scp")
    clips = []
    for utterance, relative in sorted(paths.items()):
        speaker = speakers[utterance]
        if speaker in excluded or int(ages.get(speaker, "99")) > CHILD:
            continue
        samples, rate = read_wav(corpus / relative)
        clip = Clip(utterance, speaker, int(ages[speaker]), genders.get(speaker, ""),
                    texts[utterance], samples, rate)  # fmt: skip
        if clip.stretches:
            clips.append(clip)
    return clips


def _table(path: Path) -> dict[str, str]:
    rows = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
    return {row[0]: row[1].strip() if len(row) > 1 else "" for row in rows}


@functools.cache
def _silero_session():  # type: ignore[no-untyped-def]
    from livekit.plugins.silero import onnx_model

    return onnx_model.new_inference_session(force_cpu=True)


def silero_hears(clip: Clip, threshold: float = 0.5) -> bool:
    """Whether Silero (the plugin's model, at `threshold`) hears speech anywhere in the clip."""
    from livekit.plugins.silero import onnx_model

    model = onnx_model.OnnxModel(onnx_session=_silero_session(), sample_rate=16_000)
    samples = clip.samples.astype(np.float32) / 32768.0
    if clip.rate != 16_000:
        raise ValueError(f"{clip.utterance}: 16 kHz expected")
    window = model.window_size_samples
    for start in range(0, len(samples) - window, window):
        if float(model(samples[start : start + window])) >= threshold:
            return True
    return False


def choose(clips: list[Clip]) -> list[Clip]:
    """Per kind, up to `WANTED` clips, at most one per child, the children in turn."""
    for clip in clips:
        if not silero_hears(clip):
            clip.kind = "faint"
        elif clip.pause >= PAUSED:
            clip.kind = "paused"
        elif len(clip.stretches) == 1:
            clip.kind = "quiet" if clip.loud_dbfs < QUIET_DBFS else "complete"
    chosen: list[Clip] = []
    for kind, wanted in WANTED.items():
        candidates = [c for c in clips if c.kind == kind]
        if kind == "quiet":
            candidates.sort(key=lambda c: c.loud_dbfs)
        elif kind == "paused":  # each child's longest pause: the hardest of theirs to wait out
            candidates.sort(key=lambda c: -c.pause)
        chosen += _one_per_child(candidates, wanted)
    return chosen


def _one_per_child(candidates: list[Clip], wanted: int) -> list[Clip]:
    by_child: dict[str, list[Clip]] = {}
    for clip in candidates:
        by_child.setdefault(clip.speaker, []).append(clip)
    return [clips[0] for clips in by_child.values()][:wanted]


def write_set(chosen: list[Clip], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "clips.tsv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for clip in chosen:
            samples, begin = clip.cut()
            name = f"{clip.kind}-{clip.speaker}-{clip.utterance}.wav"
            write_wav(out / name, samples, clip.rate)
            start, end = clip.stretches[0][0] - begin, clip.stretches[-1][1] - begin
            at = clip.pause_at - begin if clip.pause else 0.0
            writer.writerow([name, clip.kind, clip.speaker, clip.age, clip.gender,
                             f"{len(samples) / clip.rate:.2f}", f"{start:.2f}", f"{end:.2f}",
                             f"{clip.pause:.2f}", f"{at:.2f}", f"{clip.loud_dbfs:.1f}",
                             clip.text])  # fmt: skip
    (out / "README.md").write_text(ATTRIBUTION)


def speakers_of(directory: Path) -> set[str]:
    with (directory / "clips.tsv").open(newline="") as f:
        return {row["speaker"] for row in csv.DictReader(f, delimiter="\t")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.speech_set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", type=Path, help="a speechocean762 checkout")
    parser.add_argument("out", type=Path, help="where the set's WAVs and clips.tsv go")
    parser.add_argument(
        "--exclude", type=Path, action="append", default=[],
        help="a clips.tsv directory whose children are left out (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (args.corpus / "WAVE").is_dir():
        parser.error(f"{args.corpus}: not a speechocean762 checkout (no WAVE/)")
    excluded = set().union(*(speakers_of(d) for d in args.exclude))
    chosen = choose(corpus_children(args.corpus, excluded))
    write_set(chosen, args.out)
    counts = {k: sum(c.kind == k for c in chosen) for k in WANTED}
    print(f"{args.out}: {len(chosen)} clips {counts}, none from the {len(excluded)} children "
          "excluded", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
