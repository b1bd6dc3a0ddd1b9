"""Builds the `AgentSession` the tutors share, with its per-conversation bookkeeping."""

from __future__ import annotations

from typing import Any

from livekit.agents import AgentSession, ConversationItemAddedEvent, llm

from agent.conversation.state import SessionUserdata, is_synthetic_turn


def create_session(userdata: SessionUserdata, **models: Any) -> AgentSession[SessionUserdata]:
    """An `AgentSession` over `userdata` whose student turns reset the handoff guard.

    `models` are passed to `AgentSession` as is (stt, llm, tts, vad, turn_handling, ...).
    """
    session: AgentSession[SessionUserdata] = AgentSession(userdata=userdata, **models)

    def on_item(event: ConversationItemAddedEvent) -> None:
        item = event.item
        if (
            isinstance(item, llm.ChatMessage)
            and item.role == "user"
            and not is_synthetic_turn(item)
        ):
            userdata.note_student_turn()

    session.on("conversation_item_added", on_item)
    return session


def set_listening(session: AgentSession[Any], listening: bool) -> None:
    """Turn the student's audio input on or off (nothing to do in text-only sessions)."""
    if session.input.audio is not None:
        session.input.set_audio_enabled(listening)
