"""Moderation in the voice loop, for one session.

Pipeline tutors (`moderated_reply`, the tutor's `llm_node`): the student's turn is checked
concurrently with the tutor's model, and every sentence of the reply is checked before it is
released; its audio is synthesised meanwhile (`AudioPrefetch`) and played only once it is
cleared. A flagged student turn gets a fixed line instead of the model's reply; a flagged
sentence is replaced by the redirect line and the rest of the reply is dropped; a check
that timed out (a busy moment) is tried once more while the child hears "one moment", and
a check that failed for good says the sorry line (fail closed) unless the operator chose
fail open.

Realtime tutors speak audio directly: their input transcription and output transcript are
checked as they stream (`SafetyGuard.attach`, `moderated_transcript`); on a flag the speech
is interrupted at once, the flagged item leaves the model's context, and a fixed line is said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.agents import Agent, AgentSession, ConversationItemAddedEvent, llm
from livekit.agents.voice import ModelSettings

from agent.conversation.lines import AudioPrefetch
from agent.conversation.state import is_synthetic_turn
from agent.safety.alerts import flag_and_alerts
from agent.safety.lines import ONE_MOMENT_LINE, SORRY_LINE, line_for
from agent.safety.moderation import Direction, Moderator, Verdict

if TYPE_CHECKING:
    from agent.conversation.state import SessionUserdata

logger = logging.getLogger("tutor.safety")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HOLD = ONE_MOMENT_LINE + " "  # said while a timed-out check is tried again
MIN_SENTENCE_CHARS = 12  # "Yes." waits for more text rather than costing a check of its own


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Complete sentences at the start of `buffer`, and the unfinished rest."""
    parts = _SENTENCE_END.split(buffer)
    rest = parts.pop()
    sentences: list[str] = []
    pending = ""
    for part in parts:
        pending = f"{pending} {part}".strip() if pending else part.strip()
        if len(pending) >= MIN_SENTENCE_CHARS:
            sentences.append(pending)
            pending = ""
    if pending:
        rest = f"{pending} {rest}" if rest else f"{pending} "
    return sentences, rest


@dataclass
class SafetyGuard:
    """What a session needs to moderate its turns, and to raise flags and alerts."""

    moderator: Moderator
    fail_open: bool = False
    helpline: str = ""
    _student_checks: dict[str, asyncio.Task[Verdict]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def student_check(self, message: llm.ChatMessage) -> asyncio.Task[Verdict]:
        """The check of a student's turn, started once however often it is asked for."""
        task = self._student_checks.get(message.id)
        if task is None:
            text = message.text_content or ""
            task = asyncio.create_task(self.moderator.check(text, direction="student"))
            self._student_checks[message.id] = task
        return task

    def worth_retrying(self, verdict: Verdict) -> bool:
        """A check that failed in a way a second try may not (a timeout on a busy moment):
        tried once more before failing closed. Failing open needs no second try."""
        return verdict.failed and verdict.transient and not self.fail_open

    def line_after(self, verdict: Verdict) -> str | None:
        """The fixed line to say instead of generated text, or None to go on."""
        if verdict.failed:
            if self.fail_open:
                logger.warning("moderation failed and MODERATION_FAIL_MODE=open: speaking anyway")
                return None
            return SORRY_LINE
        if verdict.tier is None:
            return None
        return line_for(verdict.tier, self.helpline)

    def flag(
        self,
        session: AgentSession[SessionUserdata],
        *,
        speaker: str,
        text: str,
        verdict: Verdict,
        action: str,
        item_id: str | None = None,
    ) -> None:
        """Record the flag and its alerts (the outbox); log it without the words."""
        userdata = session.userdata
        logger.warning(
            "flagged %s turn: %s",
            speaker,
            verdict.tier,
            extra={
                **userdata.log_fields(),
                "speaker": speaker,
                "tier": verdict.tier,
                "categories": verdict.categories,
                "action": action,
            },
        )
        recorder = userdata.recorder
        if recorder is None:
            logger.error("records are off: this flag and its alerts cannot be kept")
            return
        recent = [
            ("student" if item.role == "user" else "tutor", item.text_content or "")
            for item in session.history.items
            if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant")
        ]
        for record in flag_and_alerts(
            session_id=userdata.session_id,
            student=userdata.student_identity,
            speaker=speaker,
            text=text,
            verdict=verdict,
            action=action,
            recent=recent,
            turn_item_id=item_id,
        ):
            recorder.writer.submit(record)

    # realtime tutors

    def attach(self, session: AgentSession[SessionUserdata]) -> None:
        """Check what the student says to a realtime tutor (pipeline tutors check it in
        their reply)."""

        def on_item(event: ConversationItemAddedEvent) -> None:
            item = event.item
            agent = session.current_agent
            if (
                isinstance(item, llm.ChatMessage)
                and item.role == "user"
                and not is_synthetic_turn(item)
                and isinstance(agent.llm, llm.RealtimeModel)
            ):
                self._spawn(self._check_realtime_input(session, agent, item))

        session.on("conversation_item_added", on_item)

    async def _check_realtime_input(
        self, session: AgentSession[SessionUserdata], agent: Agent, item: llm.ChatMessage
    ) -> None:
        verdict = await self.student_check(item)
        line = self.line_after(verdict)
        if line is None:
            return
        session.interrupt()
        if verdict.tier is not None:
            action = "safeguarding_response" if verdict.tier == "urgent" else "redirected"
            self.flag(session, speaker="student", text=item.text_content or "",
                      verdict=verdict, action=action, item_id=item.id)  # fmt: skip
        await forget_items(agent, {item.id})
        session.say(line)

    async def cut_realtime_output(
        self, session: AgentSession[SessionUserdata], agent: Agent, text: str, verdict: Verdict
    ) -> None:
        """A realtime tutor's sentence was flagged (or could not be checked): stop it now,
        take its reply out of the model's context, and say the fixed line."""
        speech = session.current_speech
        session.interrupt()
        if verdict.tier is not None:
            self.flag(session, speaker=getattr(agent, "kind", ""), text=text, verdict=verdict,
                      action="cut_and_redirected")  # fmt: skip
        if speech is not None:
            with contextlib.suppress(Exception):
                await speech.wait_for_playout()
            await forget_items(agent, {i.id for i in speech.chat_items})
        session.say(line_for("concern") if verdict.tier else SORRY_LINE)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def forget_items(agent: Agent, item_ids: set[str]) -> None:
    """Remove items from the agent's context and the session's history, so that neither this
    tutor's model nor a tutor it hands over to sees them again (the records keep them)."""
    if not item_ids:
        return
    history = agent.session.history
    history.items[:] = [item for item in history.items if item.id not in item_ids]
    kept = agent.chat_ctx.copy()
    kept.items[:] = [item for item in kept.items if item.id not in item_ids]
    await agent.update_chat_ctx(kept)


# ------------------------------------------------------------------ pipeline tutors' replies


def _latest_student_turn(chat_ctx: llm.ChatContext) -> llm.ChatMessage | None:
    for item in reversed(chat_ctx.items):
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            return None if is_synthetic_turn(item) else item
        if isinstance(item, llm.ChatMessage) and item.role == "assistant":
            return None  # the tutor already answered the student's last turn
    return None


async def moderated_reply(
    tutor: Agent,
    guard: SafetyGuard,
    chat_ctx: llm.ChatContext,
    tools: list[llm.Tool],
    model_settings: ModelSettings,
    prefetch: AudioPrefetch | None,
) -> AsyncGenerator[str | llm.ChatChunk, None]:
    """The tutor's reply, released sentence by sentence as moderation clears it."""
    session = tutor.session
    student = _latest_student_turn(chat_ctx)
    student_check = guard.student_check(student) if student is not None else None
    if prefetch is not None:
        prefetch.discard()
    cleared_student = False
    holding = False  # "one moment" said in this reply already

    async def patiently(
        pending: Awaitable[Verdict], text: str, direction: Direction
    ) -> AsyncIterator[str | Verdict]:
        """The verdict of `pending`; a check that failed transiently (timed out on a busy
        moment) is tried once more, the hold line said meanwhile (once per reply)."""
        nonlocal holding
        verdict = await pending
        if guard.worth_retrying(verdict):
            if not holding:
                holding = True
                yield HOLD
            verdict = await guard.moderator.check(text, direction=direction, retry=True)
        yield verdict

    async def student_lines() -> AsyncIterator[str]:
        """For the student's turn (its verdict normally in already): the hold line while a
        check is retried, then the line to say instead of the reply, if any."""
        if student_check is None or student is None:
            return
        verdict = Verdict(failed=True)
        async for item in patiently(student_check, student.text_content or "", "student"):
            if isinstance(item, Verdict):
                verdict = item
            else:
                yield item
        line = guard.line_after(verdict)
        if line is not None and verdict.tier is not None:
            action = "safeguarding_response" if verdict.tier == "urgent" else "redirected"
            guard.flag(session, speaker="student", text=student.text_content or "",
                       verdict=verdict, action=action, item_id=student.id)  # fmt: skip
            await forget_items(tutor, {student.id})
        if line is not None:
            yield line

    async def sentence_lines(text: str) -> AsyncIterator[str]:
        """Check one sentence, synthesising it meanwhile: the hold line while a check is
        retried, then the line to say instead of it, if any."""
        audio = prefetch.start(tutor, text, model_settings) if prefetch is not None else None
        verdict = Verdict(failed=True)
        check = guard.moderator.check(text, direction="tutor")
        async for item in patiently(check, text, "tutor"):
            if isinstance(item, Verdict):
                verdict = item
            else:
                yield item
        line = guard.line_after(verdict)
        if line is None:
            if audio is not None and prefetch is not None:
                prefetch.release(text, audio)
            return
        if audio is not None:
            audio.cancel()
        if verdict.tier is not None:
            guard.flag(session, speaker=getattr(tutor, "kind", ""), text=text, verdict=verdict,
                       action="replaced_with_redirect")  # fmt: skip
            line = line_for("concern")
        yield line

    buffer = ""
    async with contextlib.aclosing(
        Agent.default.llm_node(tutor, chat_ctx, tools, model_settings)
    ) as stream:
        async for chunk in stream:
            if not cleared_student:
                async for line in student_lines():
                    yield line
                    if line != HOLD:
                        return
                cleared_student = True
            text, calls = _split_chunk(chunk)
            buffer += text
            sentences, buffer = split_sentences(buffer)
            for sentence in sentences:
                async for line in sentence_lines(sentence):
                    yield line
                    if line != HOLD:
                        return
                yield sentence + " "
            if calls is not None:
                yield calls
    if not cleared_student:
        async for line in student_lines():
            yield line
            if line != HOLD:
                return
    if buffer.strip():
        async for line in sentence_lines(buffer.strip()):
            yield line
            if line != HOLD:
                return
        yield buffer.strip()


def _split_chunk(chunk: Any) -> tuple[str, llm.ChatChunk | None]:
    """The text of a model chunk, and the chunk again if it carries tool calls."""
    if isinstance(chunk, str):
        return chunk, None
    if isinstance(chunk, llm.ChatChunk) and chunk.delta is not None:
        text = chunk.delta.content or ""
        if chunk.delta.tool_calls:
            calls = llm.ChatChunk(
                id=chunk.id,
                delta=llm.ChoiceDelta(role="assistant", tool_calls=chunk.delta.tool_calls),
                usage=chunk.usage,
            )
            return text, calls
        return text, None
    if isinstance(chunk, llm.ChatChunk):
        return "", chunk  # usage only
    return "", None  # a flush sentinel: sentences are our unit


async def moderated_transcript(
    tutor: Agent, guard: SafetyGuard, text: AsyncIterable[Any]
) -> AsyncGenerator[Any, None]:
    """A realtime tutor's transcript, released sentence by sentence once checked; a flagged
    sentence cuts the speech (see `SafetyGuard.cut_realtime_output`)."""
    buffer = ""
    async for delta in text:
        buffer += str(delta)
        sentences, buffer = split_sentences(buffer)
        for sentence in sentences:
            if not await _realtime_sentence_ok(tutor, guard, sentence):
                return
            yield sentence + " "
    if buffer.strip() and await _realtime_sentence_ok(tutor, guard, buffer.strip()):
        yield buffer.strip()


async def _realtime_sentence_ok(tutor: Agent, guard: SafetyGuard, sentence: str) -> bool:
    verdict = await guard.moderator.check(sentence, direction="tutor")
    if guard.worth_retrying(verdict):  # the realtime voice waits on it; no line to hold
        verdict = await guard.moderator.check(sentence, direction="tutor", retry=True)
    if guard.line_after(verdict) is None:
        return True
    guard._spawn(guard.cut_realtime_output(tutor.session, tutor, sentence, verdict))
    return False
