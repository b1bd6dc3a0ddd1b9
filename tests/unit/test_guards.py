"""The routing guards: no self-route, one handoff per model turn, no ping-pong."""

from __future__ import annotations

from livekit.agents.voice.run_result import RunResult

from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata, TutorModels
from agent.conversation.tutors import HistoryAgent, MathAgent
from harness.fakes.llm import ScriptedLLM, call, calls, say
from harness.fakes.tutoring import tutoring
from harness.rosters import shipped_route_tool

QUESTION = "What is 7 times 8?"


def handoffs(result: RunResult) -> list[type]:
    return [type(e.new_agent) for e in result.events if e.type == "agent_handoff"]


async def test_route_to_the_active_tutor_is_refused_with_an_error_the_model_reads() -> None:
    fake = ScriptedLLM([say("Hi!"), call("route_to_math", question_summary=QUESTION), say("56.")])
    userdata = SessionUserdata(tutor_models={"math": TutorModels(llm=fake)})
    async with create_session(userdata) as session:
        # a Math tutor that was (mis)configured with a route to itself
        await session.start(MathAgent(llm=fake, tools=[shipped_route_tool("route_to_math")]))
        result = await session.run(user_input=QUESTION)

        result.expect.next_event().is_function_call(name="route_to_math")
        output = result.expect.next_event().is_function_call_output(is_error=True).event().item
        assert "already the Mathematics tutor" in output.output
        result.expect.next_event().is_message(role="assistant")
        assert handoffs(result) == []
        assert userdata.handoff_count == 0
        assert isinstance(session.current_agent, MathAgent)


async def test_two_route_calls_in_one_model_turn_make_exactly_one_handoff() -> None:
    scripts = {
        "orchestrator": [
            calls(
                ("route_to_math", {"question_summary": QUESTION}),
                ("route_to_history", {"question_summary": QUESTION}),
            )
        ],
        "math": [say("56.")],
    }
    async with tutoring(scripts) as t:
        result = await t.turn(QUESTION)

        assert handoffs(result) == [MathAgent]
        messages = [e.item.text_content for e in result.events if e.type == "message"]
        assert messages == ["Let me connect you with our Mathematics tutor!", "56."]
        assert t.userdata.handoff_count == 1
        assert t.llms["history"].requests == []
        # the outgoing model is not asked to comment on the dropped call
        assert t.log.names() == ["orchestrator", "orchestrator", "math"]


def ping_pong(target: str) -> list:
    return [call(target, question_summary=QUESTION) for _ in range(3)]


async def test_more_than_three_handoffs_without_a_student_turn_is_refused() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [*ping_pong("route_to_history")[:2], say("Let's do maths: 56.")],
        "history": [call("route_to_math", question_summary=QUESTION)],
    }
    # orchestrator->math (1), math->history (2), history->math (3), math->history refused
    async with tutoring(scripts) as t:
        result = await t.turn(QUESTION)

        assert handoffs(result) == [MathAgent, HistoryAgent, MathAgent]
        refusal = [
            e.item for e in result.events if e.type == "function_call_output" and e.item.is_error
        ]
        assert len(refusal) == 1 and "Too many handoffs" in refusal[0].output
        last = [e.item.text_content for e in result.events if e.type == "message"][-1]
        assert last == "Let's do maths: 56."
        assert t.userdata.handoff_count == 3


async def test_a_student_turn_resets_the_ping_pong_guard() -> None:
    scripts = {
        "orchestrator": [call("route_to_math", question_summary=QUESTION)],
        "math": [
            call("route_to_history", question_summary=QUESTION),
            say("56."),
            call("route_to_history", question_summary="Who was Napoleon?"),
        ],
        "history": [call("route_to_math", question_summary=QUESTION), say("An emperor.")],
    }
    async with tutoring(scripts) as t:
        await t.turn(QUESTION)
        assert t.userdata.handoffs_since_student_turn == 3

        result = await t.turn("Who was Napoleon?")

        assert handoffs(result) == [HistoryAgent]
        assert t.userdata.handoff_count == 4
        assert t.userdata.handoffs_since_student_turn == 1
