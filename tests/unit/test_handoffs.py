"""In-session handoffs between the real tutors, driven through a real `AgentSession`."""

from __future__ import annotations

import pytest

from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata
from agent.conversation.tutors import EnglishAgent, HistoryAgent, MathAgent, OrchestratorAgent
from harness.fakes.audio import PacedTTS, PlaybackLog, RealtimeAudioOutput
from harness.fakes.llm import UNSCRIPTED, ScriptedLLM, call, say
from harness.fakes.tutoring import KINDS, tutoring
from harness.rosters import ANNOUNCEMENTS

QUESTION = "What is 7 times 8?"


@pytest.mark.parametrize(
    ("tool", "kind", "tutor_cls"),
    [
        ("route_to_math", "math", MathAgent),
        ("route_to_history", "history", HistoryAgent),
        ("route_to_english", "english", EnglishAgent),
    ],
)
async def test_orchestrator_route_hands_off_and_specialist_answers_in_the_same_run(
    tool: str, kind: str, tutor_cls: type
) -> None:
    scripts = {"orchestrator": [call(tool, question_summary=QUESTION)], kind: [say("The answer.")]}
    async with tutoring(scripts) as t:
        result = await t.turn(QUESTION)

        result.expect.next_event().is_function_call(name=tool)
        result.expect.next_event().is_function_call_output()
        result.expect.next_event().is_agent_handoff(new_agent_type=tutor_cls)
        result.expect.next_event().is_message(role="assistant")  # the announcement
        result.expect.next_event().is_message(role="assistant")  # the answer
        result.expect.no_more_events()
        assert isinstance(t.session.current_agent, tutor_cls)
        # its first model request was told to answer the handed-over question
        [request] = t.llms[kind].requests
        assert request.texts(role="system")[-1] == tutor_cls().takeover_instructions()
        assert t.userdata.active_tutor == kind
        assert t.userdata.handoff_count == 1
        assert t.userdata.subjects_visited == [kind]


async def test_announcement_comes_before_the_answer() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("7 times 8 is 56.")],
    }
    async with tutoring(scripts) as t:
        result = await t.turn(QUESTION)

        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["math"], "7 times 8 is 56."]


async def test_announcement_in_the_outgoing_voice_while_the_answer_is_prepared() -> None:
    playback = PlaybackLog()
    voices = {kind: PacedTTS(name=kind, ttfb=0.01, seconds_per_char=0.01) for kind in KINDS}
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("7 times 8 is 56.")],
    }
    async with tutoring(scripts, voices=voices, audio_output=RealtimeAudioOutput(playback)) as t:
        await t.turn(QUESTION)
        await t.session.wait_for_idle()

        assert voices["orchestrator"].spoken[-1] == ANNOUNCEMENTS["math"]
        assert voices["math"].spoken == ["7 times 8 is 56."]
        _greeting, line, answer = playback.utterances
        assert line.ended is not None and answer.started >= line.ended  # one voice at a time
        # the Mathematics tutor's model was already asked while the line was playing
        [math_request] = t.llms["math"].requests
        assert math_request.started_at < line.ended


async def test_specialist_model_input_contains_the_question_exactly_once() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("56.")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)

        [first_math_request] = t.llms["math"].requests
        assert first_math_request.all_text().count(QUESTION) == 1
        assert first_math_request.texts(role="user") == [QUESTION]
        # it got the conversation so far, not just the question
        assert any(
            "maths, history and English" in text
            for text in first_math_request.texts(role="assistant")
        )


async def test_pending_question_absent_from_context_becomes_the_student_turn_once() -> None:
    # e.g. a tutor started from dispatch metadata: the question is in no copied history
    fake = ScriptedLLM([say("56.")])
    async with create_session(SessionUserdata()) as session:
        run = await session.start(MathAgent(llm=fake, pending_question=QUESTION), capture_run=True)

        run.expect.contains_message(role="assistant")
        [request] = fake.requests
        assert request.texts(role="user") == [QUESTION]
        assert request.all_text().count(QUESTION) == 1
        assert request.texts(role="system")[-1] == MathAgent().takeover_instructions()


async def test_no_model_request_between_the_route_call_and_the_specialist() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("56.")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)

        # greeting, the routing turn, then straight to the specialist: the outgoing model
        # is never asked for a closing reply
        assert t.log.names() == ["orchestrator", "orchestrator", "math"]
        assert UNSCRIPTED not in str(t.session.history.items)


async def test_orchestrator_math_orchestrator_history() -> None:
    napoleon = "Who was Napoleon?"
    scripts = {
        "orchestrator": [
            call("route_to_math", question_summary=QUESTION),
            call("route_to_history", question_summary=napoleon),
        ],
        "math": [say("56."), call("route_back_to_orchestrator", reason=napoleon)],
        "history": [say("Napoleon was a French emperor.")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)
        result = await t.turn(napoleon)

        result.expect.contains_agent_handoff(new_agent_type=OrchestratorAgent)
        result.expect.contains_agent_handoff(new_agent_type=HistoryAgent)
        result.expect.contains_message(role="assistant").event()
        last = [e.item for e in result.events if e.type == "message"][-1]
        assert last.text_content == "Napoleon was a French emperor."
        assert isinstance(t.session.current_agent, HistoryAgent)
        assert t.userdata.subjects_visited == ["math", "orchestrator", "history"]
        [history_request] = t.llms["history"].requests
        assert history_request.texts(role="user").count(napoleon) == 1


async def test_math_routes_to_history_directly_in_one_handoff() -> None:
    napoleon = "Who was Napoleon?"
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [say("56."), call("route_to_history", question_summary=napoleon)],
        "history": [say("A French emperor.")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)
        result = await t.turn(napoleon)

        handoffs = [e for e in result.events if e.type == "agent_handoff"]
        assert [type(h.new_agent) for h in handoffs] == [HistoryAgent]
        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["history"], "A French emperor."]


async def test_return_without_a_question_is_not_silent_and_does_not_greet_again() -> None:
    scripts = {
        "orchestrator": [
            call("route_to_math", question_summary=QUESTION),
            say("Welcome back! What next?"),
        ],
        "math": [say("56."), call("route_back_to_orchestrator", reason="")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)
        result = await t.turn("I'm done with maths.")

        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["orchestrator"], "Welcome back! What next?"]
        greeting_instructions = [
            text
            for req in t.llms["orchestrator"].requests
            for text in req.texts(role="system")
            if text.startswith("Greet the student")
        ]
        assert len(greeting_instructions) == 1


async def test_goodbye_reason_is_answered_by_the_orchestrator() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION), say("Goodbye!")],
        "math": [say("56."), call("route_back_to_orchestrator", reason="said goodbye")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)
        result = await t.turn("Goodbye!")

        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == [ANNOUNCEMENTS["orchestrator"], "Goodbye!"]
        last_request = t.llms["orchestrator"].requests[-1]
        assert last_request.texts(role="user")[-1] == "Goodbye!"
        assert last_request.all_text().count("Goodbye!") == 1
