"""A tutor job runs in this process with stand-ins (`local_job`): the production job body,
its roster, tools and instructions, on scripted models, with no LiveKit server."""

from __future__ import annotations

from agent.config.roster import shipped_roster
from agent.config.settings import load_settings
from agent.conversation.state import TutorModels
from agent.conversation.tutors import MathAgent
from agent.dispatch.plan import DispatchPlan
from agent.workers.job import JobModels, JobWiring, local_job
from harness.fakes.llm import ScriptedLLM, call, say
from harness.rosters import ANNOUNCEMENTS

QUESTION = "What is 7 times 8?"


def wiring_for(scripts: dict[str, list]) -> JobWiring:
    roster = shipped_roster()
    models = {kind: TutorModels(llm=ScriptedLLM(scripts.get(kind, []))) for kind in roster.tutors}
    return JobWiring(models=JobModels(models), roster=roster, worker="in-process")


async def test_a_local_job_greets_routes_and_answers_with_the_production_tutors() -> None:
    wiring = wiring_for(
        {
            "orchestrator": [
                say("Hi! What would you like to learn?"),
                call("route_to_math", question_summary=QUESTION),
            ],
            "math": [say("7 times 8 is 56.")],
        }
    )
    plan = DispatchPlan(session_id="s-local", student="kid-1")
    async with local_job(load_settings(records_url=""), wiring, plan=plan) as session:
        assert session.userdata.session_id == "s-local"
        assert session.userdata.student_identity == "kid-1"
        result = await session.run(user_input=QUESTION)
        result.expect.contains_function_call(name="route_to_math")
        assert isinstance(session.current_agent, MathAgent)
        said = [
            item.text_content
            for item in session.history.items
            if getattr(item, "role", None) == "assistant"
        ]
        assert said[-2:] == [ANNOUNCEMENTS["math"], "7 times 8 is 56."]


async def test_a_local_job_starts_the_tutor_its_dispatch_names() -> None:
    wiring = wiring_for({"math": [say("Hello, I am the Mathematics tutor.")]})
    plan = DispatchPlan(session_id="s-math", student="kid-2", tutor="math")
    async with local_job(load_settings(records_url=""), wiring, plan=plan) as session:
        assert isinstance(session.current_agent, MathAgent)
        assert session.userdata.active_tutor == "math"
