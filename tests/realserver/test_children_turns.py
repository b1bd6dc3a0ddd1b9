"""Real children's voices (`../shared/speech/children`, speechocean762, CC BY 4.0) on the real
server with the shipped turn-taking settings: a fluent child is answered, a child who pauses
mid-sentence is answered once on the whole sentence, a child who pauses twice hears the tutor
start over them at most once, a quiet child is heard, a whispering child is heard, a child's
short sound over the tutor only pauses it and the whole answer goes on. What the child
heard is judged from the student's side (`harness.turns`); `bench turns --real-server` times
the same turns."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fakes.production import GREETING, HEARD_ALL, echo_script
from harness.realserver import TURN, ModelFake
from harness.speech import CHILDREN, SpokenTurn, TurnTranscriber, as_microphone, children_turns
from harness.student import Speech
from harness.turns import REPLY, speak
from harness.wav import read_wav, write_wav
from tests.realserver.conftest import Classroom

pytestmark = pytest.mark.asyncio(loop_scope="session")


def clip(name: str) -> SpokenTurn:
    found = [t for t in children_turns(CHILDREN) if t.name == name]
    assert found, f"{name} is not in {CHILDREN}"
    return found[0]


FLUENT = "complete-0006-000060111"  # 6 years old: "he left the fruit stand"
PAUSED = "paused-1197-011970087"  # 1.6 s of silence after "jayme needs new"
QUIET = "quiet-0005-000050078"  # 6 years old, the loud frames at -27 dBFS
TWICE = "paused-0145-001450051"  # 7 years old: 2.0 s of silence, speech, then 1.6 s more
WHISPER = "faint-1404-014040122"  # 7 years old, whispering: Silero alone never hears it


@pytest.fixture
def transcriber(models: ModelFake) -> Iterator[TurnTranscriber]:
    """The model fake hears spoken turns part by part, and the main tutor echoes them."""
    fake = models.fake
    assert fake is not None
    heard = TurnTranscriber()
    saved = fake.chat, fake.transcribe
    fake.chat, fake.transcribe = echo_script, heard
    yield heard
    fake.chat, fake.transcribe = saved


async def child_says(classroom: Classroom, transcriber: TurnTranscriber, turn: SpokenTurn):  # type: ignore[no-untyped-def]
    room = f"child-{secrets.token_hex(4)}"
    student = await classroom.join(room, identity="kid")
    await student.wait_for_caption(GREETING, TURN)
    result = await speak(student, transcriber, turn, classroom.speech_dir)
    await student.leave()
    return result


async def test_a_fluent_child_is_answered_after_finishing(
    classroom: Classroom, transcriber: TurnTranscriber
) -> None:
    turn = clip(FLUENT)
    result = await child_says(classroom, transcriber, turn)
    assert not result.cut_off, result
    assert result.latency is not None, result
    assert any(turn.text in reply for reply in result.replies), result


async def test_a_child_who_pauses_mid_sentence_stops_the_tutor_and_gets_one_whole_answer(
    classroom: Classroom, transcriber: TurnTranscriber
) -> None:
    turn = clip(PAUSED)
    assert len(turn.parts) == 2
    result = await child_says(classroom, transcriber, turn)
    assert not result.half_answer and not result.unanswered, result
    whole = [r for r in result.replies if "whole answer" in r]
    assert whole and turn.text in whole[-1], result
    # no whole reply to the first part alone was heard
    assert not [r for r in whole if turn.parts[1] not in r], result
    # a tutor that started in the pause stopped while the child was still speaking
    cut_in = [(a, b) for a, b in result.tutor_heard if a < turn.speech_end]
    assert all(b < turn.speech_end for _, b in cut_in), result


async def test_a_child_who_pauses_twice_hears_the_tutor_start_over_them_at_most_once(
    classroom: Classroom, transcriber: TurnTranscriber
) -> None:
    turn = clip(TWICE)
    result = await child_says(classroom, transcriber, turn)
    # the first pause is long enough for the tutor to start; once the child has gone on over
    # it, the rest of the turn waits RESUMED_ENDPOINTING_DELAY, longer than the second pause
    cut_in = [(a, b) for a, b in result.tutor_heard if a < turn.speech_end]
    assert len(cut_in) <= 1, result
    assert not result.half_answer and not result.unanswered, result


async def test_a_quiet_child_is_heard(classroom: Classroom, transcriber: TurnTranscriber) -> None:
    turn = clip(QUIET)
    result = await child_says(classroom, transcriber, turn)
    assert not result.unheard, result
    assert any(turn.text in reply for reply in result.replies), result


async def test_a_whispering_child_is_heard(
    classroom: Classroom, transcriber: TurnTranscriber
) -> None:
    turn = clip(WHISPER)
    result = await child_says(classroom, transcriber, turn)
    assert not result.unheard and not result.cut_off, result
    assert any(turn.text in reply for reply in result.replies), result


SOUND_AT, SOUND_SECONDS = 0.65, 0.35  # FLUENT's first word: Silero's speech throughout


def short_sound(turn: SpokenTurn, folder: Path) -> Path:
    """The child's own voice (`SOUND_AT`, for `SOUND_SECONDS`), at the microphone's rate: once
    the question has been heard it holds no words, so its transcript is empty and the
    interruption it makes a false one."""
    samples, rate = read_wav(as_microphone(turn, folder))
    start = int(SOUND_AT * rate)
    sound = samples[start : start + int(SOUND_SECONDS * rate)]
    return write_wav(folder / f"sound-{turn.name}.wav", sound, rate)


async def test_a_childs_short_sound_over_the_tutor_pauses_it_and_the_whole_answer_goes_on(
    classroom: Classroom, transcriber: TurnTranscriber
) -> None:
    turn = clip(FLUENT)
    sound = short_sound(turn, classroom.speech_dir)
    student = await classroom.join(f"child-{secrets.token_hex(4)}", identity="kid")
    await student.wait_for_caption(GREETING, TURN)
    first_caption = len(student.captions)
    transcriber.expect(turn, started=time.monotonic() + student.source.queued_duration)
    asked = await student.say(as_microphone(turn, classroom.speech_dir))

    def tutor_speech() -> list[Speech]:
        return [s for s in student.speech() if s.identity != "kid" and s.end > asked]

    await student.wait_for(lambda: tutor_speech(), TURN, "the tutor's answer")
    sound_end = await student.say(sound)
    sound_start = sound_end - SOUND_SECONDS
    await student.wait_for(
        lambda: any(HEARD_ALL in c.text for c in student.captions[first_caption:]), TURN,
        "the whole answer",
    )  # fmt: skip
    await student.wait_for(lambda: student.quiet_since(1.5), TURN, "quiet")
    report = student.report()
    await student.leave()
    replies = [c.text for c in student.captions[first_caption:] if c.text.startswith(REPLY)]
    assert len(replies) == 1 and turn.text in replies[0] and HEARD_ALL in replies[0], report
    heard = tutor_speech()
    # the tutor was speaking when the sound began, went quiet, and went on once it ended
    assert len(heard) == 2, report
    assert heard[0].start < sound_start < heard[0].end < heard[1].start, report
    assert heard[1].start > sound_end, report
