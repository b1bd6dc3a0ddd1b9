"""Routing tools shared by the tutors, and the in-session handoff they perform.

A route tool hands the floor to another tutor of the same `AgentSession`: the outgoing
tutor speaks a fixed line with `session.say`, and the tool returns only the incoming
tutor (no tool output), so the outgoing model is not asked for a closing reply. The
incoming tutor gets the conversation so far and `_pending_question`, and answers in its
`on_enter`.
"""

from __future__ import annotations

import logging
from typing import Literal

from livekit.agents import (
    Agent,
    AgentSession,
    RunContext,
    StopResponse,
    ToolError,
    function_tool,
    llm,
    tts,
)

from agent.state import SessionUserdata, TutorKind
from agent.telemetry.handoffs import HandoffNote

logger = logging.getLogger("tutor.routing")

ANNOUNCEMENTS: dict[TutorKind, str] = {
    "math": "Let me connect you with our Mathematics tutor!",
    "history": "Let me connect you with our History tutor!",
    "english": "Let me connect you with our English tutor!",
    "orchestrator": "Let me pass you back to your main tutor!",
}

# how much of the conversation an incoming tutor is given (messages, newest kept)
MAX_CARRIED_ITEMS = 40


def claim_handoff(context: RunContext[SessionUserdata], target: TutorKind) -> None:
    """Apply the guards and claim this model turn's one handoff, or raise.

    It never awaits, so two route calls of one model turn, even executed concurrently,
    see each other's claim.
    """
    # imported here because the tutor modules import the tools below
    from agent.tutors.base import Tutor

    userdata = context.userdata
    current = context.session.current_agent
    if isinstance(current, Tutor) and current.kind == target:
        raise ToolError(
            f"You are already the {current.title}. Answer the student's question yourself."
        )
    speech_id = context.speech_handle.id
    if userdata.routing_speech_id == speech_id:
        logger.info(
            "dropped a second route call in the same turn",
            extra={**userdata.log_fields(), "target": target},
        )
        raise StopResponse()
    if userdata.handoffs_since_student_turn >= userdata.max_handoffs_without_student_turn:
        logger.warning(
            "handoff refused: too many in a row", extra={**userdata.log_fields(), "target": target}
        )
        raise ToolError(
            "Too many handoffs without hearing from the student. Do not route again: "
            "answer the student yourself as well as you can."
        )
    userdata.routing_speech_id = speech_id
    userdata.note_handoff(target)
    logger.info(
        "handoff",
        extra={**userdata.log_fields(), "target": target, "handoff_count": userdata.handoff_count},
    )


def route(context: RunContext[SessionUserdata], target: TutorKind, question: str) -> Agent | None:
    """Hand over to `target`: across workers if another worker hosts it, else in-session."""
    crossing = context.userdata.crossing
    if crossing is not None and target in crossing.workers:
        claim_handoff(context, target)
        crossing.start(context.session, target, question.strip())
        return None  # no tool output: the outgoing model is not asked to reply
    return hand_off(context, target, question)


def hand_off(context: RunContext[SessionUserdata], target: TutorKind, question: str) -> Agent:
    """In-session: the incoming tutor, with the question pending and the outgoing tutor's
    line (in the outgoing voice) to play first."""
    from agent.tutors.base import Announcement, build_tutor, prefetch_line

    claim_handoff(context, target)
    outgoing = current_kind(context.session)
    voice = outgoing_voice(context.session)
    line = ANNOUNCEMENTS[target]
    # in a session with audio, synthesise the line now: it is ready when the incoming tutor
    # queues it, even if that is only after the floor is free (a tutor that took over)
    audio = prefetch_line(voice, line) if voice is not None and _plays_audio(context) else None
    return build_tutor(
        target,
        context.userdata,
        chat_ctx=carried_context(context.session),
        pending_question=question.strip() or None,
        question_in_context=True,
        announcement=Announcement(line, voice, speaker=outgoing or None, audio=audio),
        handoff=HandoffNote(outgoing, target, "in_session", question=question.strip()),
    )


def _plays_audio(context: RunContext[SessionUserdata]) -> bool:
    output = context.session.output
    return output.audio is not None and output.audio_enabled


def current_kind(session: AgentSession[SessionUserdata]) -> TutorKind | Literal[""]:
    """The kind of the tutor that has the floor ("" if it is not one of ours)."""
    from agent.tutors.base import Tutor

    current = session.current_agent
    return current.kind if isinstance(current, Tutor) else ""


def outgoing_voice(session: AgentSession[SessionUserdata]) -> tts.TTS | None:
    """The TTS the current tutor speaks with (its own, else the session's)."""
    voice = session.current_agent.tts
    return voice if isinstance(voice, tts.TTS) else session.tts


def carried_context(session: AgentSession[SessionUserdata]) -> llm.ChatContext:
    """The conversation so far, without tool calls and instructions, newest items kept."""
    history = session.history.copy(
        exclude_function_call=True, exclude_instructions=True, exclude_handoff=True
    )
    return history.truncate(max_items=MAX_CARRIED_ITEMS)


@function_tool
async def route_to_math(
    context: RunContext[SessionUserdata], question_summary: str
) -> Agent | None:
    """Hand the student to the Mathematics tutor for any maths question: arithmetic,
    fractions, algebra, geometry, word problems.

    Args:
        question_summary: The student's question, restated completely in one sentence.
    """
    return route(context, "math", question_summary)


@function_tool
async def route_to_history(
    context: RunContext[SessionUserdata], question_summary: str
) -> Agent | None:
    """Hand the student to the History tutor for any history question: events, people,
    dates, civilisations.

    Args:
        question_summary: The student's question, restated completely in one sentence.
    """
    return route(context, "history", question_summary)


@function_tool
async def route_to_english(
    context: RunContext[SessionUserdata], question_summary: str
) -> Agent | None:
    """Hand the student to the English tutor for English language questions: grammar,
    vocabulary, spelling, reading, writing, pronunciation.

    Args:
        question_summary: The student's question, restated completely in one sentence.
    """
    return route(context, "english", question_summary)


@function_tool
async def route_back_to_orchestrator(
    context: RunContext[SessionUserdata], reason: str
) -> Agent | None:
    """Hand the student back to the main tutor when they ask about something outside your
    subject, want to stop, or say goodbye.

    Args:
        reason: What the student wants now, e.g. their new question, or "said goodbye".
    """
    return route(context, "orchestrator", reason)
