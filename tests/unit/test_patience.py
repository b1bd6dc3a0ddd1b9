"""A student who goes on speaking over the tutor's reply gets more patience for the rest of
that turn, and the usual delays come back once the tutor speaks again."""

from __future__ import annotations

from livekit.agents import AgentStateChangedEvent, UserStateChangedEvent

from agent.config.settings import load_settings
from agent.conversation.session import create_session
from agent.conversation.state import SessionUserdata
from agent.turns.options import turn_handling
from agent.turns.patience import keep_patience, patience_for


def student(session, state: str) -> None:  # type: ignore[no-untyped-def]
    session.emit("user_state_changed", UserStateChangedEvent(old_state="away", new_state=state))


def tutor(session, state: str) -> None:  # type: ignore[no-untyped-def]
    session.emit("agent_state_changed", AgentStateChangedEvent(old_state="idle", new_state=state))


def delays(session) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    return session.options.endpointing["min_delay"], session.options.endpointing["max_delay"]


async def test_speaking_over_the_tutor_makes_the_rest_of_the_turn_wait_longer() -> None:
    settings = load_settings(
        min_endpointing_delay=0.2, max_endpointing_delay=1.0, resumed_endpointing_delay=1.5
    )
    session = create_session(SessionUserdata(), turn_handling=turn_handling(settings))
    patience = patience_for(settings)
    assert patience is not None
    keep_patience(session, patience)

    student(session, "speaking")  # a turn begun while the tutor is quiet: the usual delays
    assert delays(session) == (0.2, 1.0)
    student(session, "listening")
    tutor(session, "thinking")
    tutor(session, "speaking")  # the tutor starts inside the child's pause
    student(session, "speaking")  # ... and the child goes on over it
    assert delays(session) == (1.5, 1.5)
    tutor(session, "listening")  # the framework pauses the tutor
    student(session, "listening")  # the child pauses again, then goes on: still patient
    student(session, "speaking")
    assert delays(session) == (1.5, 1.5)
    student(session, "listening")
    tutor(session, "thinking")
    assert delays(session) == (1.5, 1.5)
    tutor(session, "speaking")  # the whole turn answered
    assert delays(session) == (0.2, 1.0)


async def test_patience_off_leaves_the_delays_alone() -> None:
    settings = load_settings(min_endpointing_delay=0.2, resumed_endpointing_delay=0)
    session = create_session(SessionUserdata(), turn_handling=turn_handling(settings))
    patience = patience_for(settings)
    assert patience is not None
    keep_patience(session, patience)
    tutor(session, "speaking")
    student(session, "speaking")
    assert delays(session) == (0.2, 1.0)
    # dynamic endpointing learns the child's pauses itself; ours would reset what it learned
    assert patience_for(load_settings(endpointing_mode="dynamic")) is None


def test_jobs_that_end_turns_themselves_keep_patience_and_those_left_to_the_model_do_not() -> None:
    from agent.config.roster import roster_for
    from agent.workers.entry import WorkerPlan, job_models
    from agent.workers.models import pipeline_tutor_models, realtime_tutor_models
    from agent.workers.resources import ProcessResources

    settings = load_settings(resumed_endpointing_delay=1.25)
    roster = roster_for(settings)
    pipeline = WorkerPlan(settings, roster, "learning-orchestrator")
    resources = ProcessResources(tutor_models=pipeline_tutor_models(settings, roster))
    patience = job_models(resources, pipeline).patience
    assert patience is not None and patience.resumed_delay == 1.25
    assert job_models(resources, pipeline).patience is not patience  # one per job
    realtime = WorkerPlan(settings, roster, "learning-english")
    assert not realtime.pipeline
    hosted = {
        kind: realtime_tutor_models(settings, roster, kind)
        for kind in roster.hosted_on("learning-english")
    }
    # a realtime tutor whose turns the model ends (the default) has none of ours
    assert job_models(ProcessResources(tutor_models=hosted), realtime).patience is None
    ended_here = load_settings(resumed_endpointing_delay=1.25, realtime_turn_detection="local")
    realtime = WorkerPlan(ended_here, roster_for(ended_here), "learning-english")
    patience = job_models(ProcessResources(tutor_models=hosted), realtime).patience
    assert patience is not None and patience.resumed_delay == 1.25
