"""Routing tools, generated from the roster, and the in-session handoff they perform.

Each tutor gets `route_to_<kind>(question_summary)` for every tutor it may reach (the
orchestrator: all of them; the others: their `routes_to`) and `route_back_to_orchestrator
(reason)`; the roster's `covers` is the description the model reads. A route tool hands the
floor to another tutor of the same `AgentSession`: the outgoing tutor's fixed line (the
target's `handoff_line`) plays in its own voice, and the tool returns only the incoming
tutor (no tool output), so the outgoing model is not asked for a closing reply. The
incoming tutor gets the conversation so far and `_pending_question`, and answers in its
`on_enter`. A tutor hosted by another worker is reached across workers (`agent.handover.outgoing`).

`build_tutor` is the one way a tutor is made for a session: its roster entry, the models the
worker configured for it, and these routing tools (tutors themselves never import routing).
"""

from __future__ import annotations

import logging
from typing import Literal, Unpack

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

from agent.config.roster import ORCHESTRATOR, Roster
from agent.conversation import tutors  # noqa: F401  (registers the named tutor classes)
from agent.conversation.lines import prefetch_line
from agent.conversation.state import HandoffNote, SessionUserdata, TutorKind, TutorModels
from agent.conversation.tutor import Announcement, Tutor, TutorOptions, tutor_class

logger = logging.getLogger("tutor.routing")

ROUTE_BACK = "route_back_to_orchestrator"
QUESTION_ARG = "The student's question, restated completely in one sentence."
REASON_ARG = 'What the student wants now, e.g. their new question, or "said goodbye".'

# how much of the conversation an incoming tutor is given (messages, newest kept)
MAX_CARRIED_ITEMS = 40


def claim_handoff(context: RunContext[SessionUserdata], target: TutorKind) -> None:
    """Apply the guards and claim this model turn's one handoff, or raise.

    It never awaits, so two route calls of one model turn, even executed concurrently,
    see each other's claim.
    """
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
    claim_handoff(context, target)
    outgoing = current_kind(context.session)
    voice = outgoing_voice(context.session)
    line = context.userdata.roster.tutor(target).handoff_line
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


def route_tool_name(target: TutorKind) -> str:
    return ROUTE_BACK if target == ORCHESTRATOR else f"route_to_{target}"


def route_tool(roster: Roster, target: TutorKind) -> llm.FunctionTool:
    """The tool that hands the student to `target`, described by the roster's `covers`."""
    spec = roster.tutor(target)
    covers = spec.covers.rstrip(". ")
    if target == ORCHESTRATOR:

        async def route_back(context: RunContext[SessionUserdata], reason: str) -> Agent | None:
            return route(context, ORCHESTRATOR, reason)

        description = f"Hand the student back to the {spec.title} for {covers}."
        # the docstring carries the argument's description into the tool's schema
        route_back.__doc__ = f"{description}\n\nArgs:\n    reason: {REASON_ARG}"
        return function_tool(route_back, name=ROUTE_BACK, description=description)

    async def route_to(context: RunContext[SessionUserdata], question_summary: str) -> Agent | None:
        return route(context, target, question_summary)

    description = f"Hand the student to the {spec.title} for {covers}."
    route_to.__doc__ = f"{description}\n\nArgs:\n    question_summary: {QUESTION_ARG}"
    return function_tool(route_to, name=route_tool_name(target), description=description)


def route_tools(roster: Roster, kind: TutorKind) -> list[llm.FunctionTool]:
    """Every routing tool of the `kind` tutor: its direct routes, then the way back."""
    targets = roster.routes_of(kind)
    if kind != ORCHESTRATOR:
        targets = [*targets, ORCHESTRATOR]
    return [route_tool(roster, target) for target in targets]


def build_tutor(
    kind: TutorKind, userdata: SessionUserdata, **options: Unpack[TutorOptions]
) -> Tutor:
    """Create the tutor of `kind` of the session's roster, with the models the worker
    configured for it and its routing tools (a kind with a class of its own, e.g.
    `MathAgent`, is that class)."""
    roster = userdata.roster
    models = userdata.tutor_models.get(kind, TutorModels())
    tools = [*route_tools(roster, kind), *options.pop("tools", [])]
    return tutor_class(kind)(
        kind=kind, **{"roster": roster, **models.as_kwargs(), **options, "tools": tools}
    )
