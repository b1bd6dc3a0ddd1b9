"""Real children's voices (`../shared/speech/children`, speechocean762, CC BY 4.0) on the real
server with the shipped turn-taking settings: a fluent child is answered, a child who pauses
mid-sentence is answered once on the whole sentence, a child who pauses twice hears the tutor
start over them at most once, a quiet child is heard. What the child
heard is judged from the student's side (`harness.turns`); `bench turns --real-server` times
the same turns."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from harness.fakes.production import GREETING, echo_script
from harness.realserver import TURN, ModelFake
from harness.speech import CHILDREN, SpokenTurn, TurnTranscriber, children_turns
from harness.turns import speak
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
