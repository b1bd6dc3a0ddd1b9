"""A child's spoken turn on the real server, judged as the child heard it: when the tutor
first sounded after the child's last voiced moment, whether it cut in before, whether the last
whole reply covered the whole sentence, and how long the tutor sounded over the child while
the child was sounding (`SpokenTurn.sounding`; tutor audio in the child's silences is a
cut-off, not overlap) and while the child's voice was heard (`SpokenTurn.voice`: from the
first pitched moment, so a breath or an "f" before the voice is not counted).

The main tutor's replies come from `echo_script` ("You asked: ..."), so a reply's caption says
which of the child's words it answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness import realserver
from harness.fakes.production import HEARD_ALL, NOUN
from harness.speech import SpokenTurn, TurnTranscriber, as_microphone
from harness.student import HEARD_FRAME, Student

REPLY = "You asked:"
ANSWER_WAIT = 15.0  # after the speech, no whole reply by then: unanswered (or unheard)
SETTLE = 1.5  # quiet this long after a reply: every reply to the turn has been heard
SETTLE_CUT = 4.0  # ... after a reply that cut the child off (the next may come later)
QUIET = 1.0  # before each clip, the tutor has been quiet this long


@dataclass
class TurnResult:
    name: str
    kind: str
    latency: float | None  # s, last voiced moment -> first tutor audio (None: cut off/none)
    cut_off: bool
    half_answer: bool
    unheard: bool
    unanswered: bool
    overlap_ms: float
    overlap_voice_ms: float
    replies: list[str]
    spoke_until: float  # monotonic: the child's last voiced moment
    started: float  # monotonic: when the clip began to play
    tutor_heard: list[tuple[float, float]]  # stretches of tutor audio, s into the clip


def judge(student: Student, turn: SpokenTurn, start: float, first_caption: int) -> TurnResult:
    """What the child heard of the clip that started playing at `start` (monotonic)."""
    speech_end = start + turn.speech_end
    tutor = sorted(
        t
        for who, times in student.loud.items()
        if who != student.identity
        for t in times
        if t >= start + turn.speech_start
    )
    replies = [c for c in student.captions[first_caption:] if c.text.startswith(REPLY)]
    first_audio = tutor[0] if tutor else None
    cut_off = (first_audio is not None and first_audio < speech_end) or any(
        c.at < speech_end for c in replies
    )
    whole = [c for c in replies if HEARD_ALL in c.text]

    def over(stretches: tuple[tuple[float, float], ...]) -> int:
        """ms of tutor audio heard inside `stretches` of the clip."""
        heard = [t for t in tutor if any(start + a <= t < start + b for a, b in stretches)]
        return round(len(heard) * HEARD_FRAME * 1000)

    return TurnResult(
        name=turn.name,
        kind=turn.kind,
        latency=first_audio - speech_end if first_audio is not None and not cut_off else None,
        cut_off=cut_off,
        half_answer=bool(whole) and turn.text not in whole[-1].text,
        unheard=not replies and not tutor,
        unanswered=bool(tutor or replies) and not whole,
        overlap_ms=over(turn.sounding),
        overlap_voice_ms=over(turn.voice),
        replies=[c.text for c in replies],
        spoke_until=speech_end,
        started=start,
        tutor_heard=[
            (round(s.start - start, 2), round(s.end - start, 2))
            for s in student.speech()
            if s.identity != student.identity and s.end >= start + turn.speech_start
        ],
    )


async def speak(
    student: Student, transcriber: TurnTranscriber, turn: SpokenTurn, mic: Path
) -> TurnResult:
    await student.wait_for(lambda: student.quiet_since(QUIET), realserver.TURN, "a quiet moment")
    microphone = as_microphone(turn, mic)
    first_caption = len(student.captions)
    # the clip plays once the silence already queued in the microphone has
    transcriber.expect(turn, started=time.monotonic() + student.source.queued_duration)
    end = await student.say(microphone)
    start = end - turn.seconds
    deadline = time.monotonic() + ANSWER_WAIT

    def answered() -> bool:
        whole = any(HEARD_ALL in c.text for c in student.captions[first_caption:])
        return whole or time.monotonic() > deadline

    await student.wait_for(answered, ANSWER_WAIT + 1, "an answer or the wait's end")
    settle = SETTLE_CUT if judge(student, turn, start, first_caption).cut_off else SETTLE
    await student.wait_for(lambda: student.quiet_since(settle), realserver.TURN, "quiet")
    return judge(student, turn, start, first_caption)


async def go_to_english(student: Student, transcriber: TurnTranscriber, speech_dir: Path) -> str:
    """Ask a question about nouns aloud (espeak-ng; the main tutor's `echo_script` routes it
    to English) and wait for the English tutor's first whole answer; returns its identity."""
    main = {c.identity for c in student.captions}
    await student.wait_for(lambda: student.quiet_since(QUIET), realserver.TURN, "a quiet moment")
    transcriber.expect_words(NOUN)
    await student.say(realserver.espeak_wav(NOUN, speech_dir))

    def english() -> str | None:
        answers = [c for c in student.captions if c.identity not in main and HEARD_ALL in c.text]
        return answers[0].identity if answers else None

    await student.wait_for(lambda: english() is not None, realserver.TURN, "English's answer")
    identity = english()
    assert identity is not None
    return identity
