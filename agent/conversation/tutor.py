"""A tutor: built from its roster entry, it answers the pending question and takes the floor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

from livekit import rtc
from livekit.agents import Agent, llm, stt, tts
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.voice import ModelSettings, SpeechHandle
from livekit.agents.voice.io import TimedString

from agent.config.roster import Roster, shipped_roster
from agent.conversation.floor import FloorGate
from agent.conversation.instructions import OPENING, TAKEOVER, WELCOME_BACK, tutor_instructions
from agent.conversation.lines import AudioPrefetch, Prefetched, line_cache, one_chunk
from agent.conversation.presence import publish_tutor
from agent.conversation.state import SYNTHETIC_TURN_KEY, HandoffNote, SessionUserdata, TutorKind
from agent.framework import set_preemptive_tts
from agent.safety.guard import moderated_reply, moderated_transcript
from agent.safety.lines import is_fixed_line
from agent.telemetry.handoffs import handoff_finished, handoff_gap

logger = logging.getLogger("tutor")

_REGISTRY: dict[TutorKind, type[Tutor]] = {}


@dataclass(frozen=True)
class Announcement:
    """The outgoing tutor's fixed handoff line, in the outgoing tutor's voice (its TTS)."""

    text: str
    tts: tts.TTS | None = None
    speaker: TutorKind | None = None  # the outgoing tutor (whose line it is in the records)
    audio: Prefetched | None = None  # synthesised from the moment the handoff was decided


class TutorOptions(TypedDict, total=False):
    """What a tutor accepts besides its kind; all optional, so `MathAgent()` works as is."""

    roster: Roster | None
    tools: list[llm.Tool | llm.Toolset]
    chat_ctx: llm.ChatContext | None
    llm: NotGivenOr[llm.LLM | llm.RealtimeModel]
    stt: NotGivenOr[stt.STT]
    tts: NotGivenOr[tts.TTS]
    pending_question: str | None
    question_in_context: bool
    floor: asyncio.Event | None
    announcement: Announcement | None
    handoff: HandoffNote | None
    resumed: bool


class Tutor(Agent):
    """A tutor of the roster that, on entering, answers the question it was handed, or opens
    politely.

    Its title, instructions and routing tools come from its roster entry (`roster`, else the
    default roster). `_pending_question` is set by the routing tool (in-session) or by the
    worker from dispatch metadata (across workers). `_question_in_context` says whether the
    student's own words are already in the copied conversation: then the reply answers them
    and the question is not added again (the model sees it exactly once). `floor`, when
    given, is set by the worker once the outgoing tutor of a floor handover has left; until
    then the tutor stays silent.
    """

    # the roster kind; a class named for one kind (e.g. `MathAgent`) sets it as a class
    # attribute, and build_tutor makes that class for that kind
    kind: TutorKind

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    def __init__(
        self,
        *,
        kind: TutorKind | None = None,
        roster: Roster | None = None,
        tools: list[llm.Tool | llm.Toolset] | None = None,
        chat_ctx: NotGivenOr[llm.ChatContext | None] = NOT_GIVEN,
        llm: NotGivenOr[llm.LLM | llm.RealtimeModel] = NOT_GIVEN,
        stt: NotGivenOr[stt.STT] = NOT_GIVEN,
        tts: NotGivenOr[tts.TTS] = NOT_GIVEN,
        pending_question: str | None = None,
        question_in_context: bool = False,
        floor: asyncio.Event | None = None,
        announcement: Announcement | None = None,
        handoff: HandoffNote | None = None,
        resumed: bool = False,
    ) -> None:
        roster = roster or shipped_roster()
        kind = kind or getattr(type(self), "kind", None)
        if kind is None:
            raise TypeError("a Tutor needs the kind of its roster entry")
        spec = roster.tutor(kind)
        self.kind = kind
        self.title = spec.title  # how the student hears it named, e.g. "Mathematics tutor"
        super().__init__(
            instructions=tutor_instructions(roster, kind),
            tools=tools or [],
            chat_ctx=chat_ctx,
            llm=llm,
            stt=stt,
            tts=tts,
        )
        self._pending_question: str | None = pending_question
        self._question_in_context = question_in_context
        self._floor = floor
        self._announcement = announcement
        self._handoff = handoff
        self._resumed = resumed
        self._prefetch = AudioPrefetch()

    @property
    def userdata(self) -> SessionUserdata:
        return self.session.userdata

    # moderation sits in the voice loop: every node the reply passes through checks it

    def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[llm.ChatChunk | str]:
        guard = self.userdata.safety
        if guard is None:
            return Agent.default.llm_node(self, chat_ctx, tools, model_settings)
        audio = self.session.output.audio is not None and self.session.output.audio_enabled
        prefetch = self._prefetch if audio else None
        return moderated_reply(self, guard, chat_ctx, tools, model_settings, prefetch)

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncGenerator[rtc.AudioFrame, None]:
        if self.userdata.safety is None:
            async for frame in Agent.default.tts_node(self, text, model_settings):
                yield frame
            return
        # moderated replies arrive sentence by sentence; play a sentence's prefetched audio,
        # and a fixed line from the cache
        voice = self.tts if isinstance(self.tts, tts.TTS) else self.session.tts
        async for chunk in text:
            if not chunk.strip():
                continue
            prefetched = self._prefetch.take(chunk)
            if prefetched is not None:
                frames: AsyncIterable[rtc.AudioFrame] = prefetched.frames()
            elif is_fixed_line(chunk) and isinstance(voice, tts.TTS):
                frames = line_cache().frames(voice, chunk.strip())
            else:
                frames = Agent.default.tts_node(self, one_chunk(chunk), model_settings)
            async for frame in frames:
                yield frame

    def transcription_node(
        self, text: AsyncIterable[str | TimedString], model_settings: ModelSettings
    ) -> AsyncIterable[str | TimedString]:
        guard = self.userdata.safety
        if guard is None or not isinstance(self.llm, llm.RealtimeModel):
            return Agent.default.transcription_node(self, text, model_settings)
        return moderated_transcript(self, guard, text)

    async def on_enter(self) -> None:
        if self._floor is not None:
            self._hold_until_floor(self._floor)
        userdata = self.userdata
        userdata.active_tutor = self.kind
        if self._floor is None:  # else published once it has the floor (agent.handover.incoming)
            publish_tutor(userdata.presence, self.kind, self.title)
        question, self._pending_question = self._pending_question, None
        logger.info(
            "tutor entered",
            extra={**userdata.log_fields(), "pending_question": bool(question)},
        )
        line: SpeechHandle | None = None
        if self._announcement is not None:
            line = self.announce(self._announcement)
            self._announcement = None
        # the reply is queued behind the announcement; synthesise it while the line plays
        set_preemptive_tts(self, True)
        if question:
            handle = self.answer(question)
        elif self._resumed:
            self._resumed = False
            handle = self.session.generate_reply(instructions=self.welcome_back_instructions())
        else:
            handle = self.session.generate_reply(instructions=self.opening_instructions())
        handle.add_done_callback(lambda _: set_preemptive_tts(self, False))
        if self._handoff is not None:
            note, self._handoff = self._handoff, None
            handoff_finished(userdata, note, "completed")
            if line is not None:
                handle.add_done_callback(lambda _: _measure_gap(userdata, note, line, handle))

    def _hold_until_floor(self, floor: asyncio.Event) -> None:
        """Joined through a floor handover: the outgoing tutor is still finishing, so nothing
        of ours may be heard until it has left; prepare the answer meanwhile."""
        output = self.session.output.audio
        if isinstance(self.llm, llm.RealtimeModel) and output is not None:
            # the framework asks a realtime model only once its speech may play: let it play
            # now, into a gate that keeps the audio until the floor is free
            self.session.output.audio = FloorGate(output, floor)
            return
        # hold the speech queue (interruptible as any speech: the student's audio is off
        # until the floor is ours); a pipeline answer is prepared behind the hold
        self.session.say("", audio=_silent_until(floor), add_to_chat_ctx=False)

    def announce(self, announcement: Announcement) -> SpeechHandle:
        """Speak the outgoing tutor's line first, in its voice, while this tutor prepares.

        Queued here rather than on the outgoing tutor, so that this tutor's model and TTS
        already work on the answer while the line plays: no silence between the two.
        """
        voice = announcement.tts
        if announcement.audio is not None:
            audio: Any = announcement.audio.frames()
        elif voice is not None:
            audio = line_cache().frames(voice, announcement.text)
        else:
            audio = NOT_GIVEN
        if announcement.speaker is not None:
            self.userdata.spoken_as[announcement.text] = announcement.speaker
        return self.session.say(announcement.text, audio=audio)

    def answer(self, question: str) -> SpeechHandle:
        """Answer the handed-over question now, putting it in the context only if absent."""
        if self._question_in_context:
            return self.session.generate_reply(instructions=self.takeover_instructions())
        turn = llm.ChatMessage(
            role="user", content=[question], extra={SYNTHETIC_TURN_KEY: "handoff"}
        )
        return self.session.generate_reply(
            user_input=turn, instructions=self.takeover_instructions()
        )

    def takeover_instructions(self) -> str:
        return TAKEOVER.format(title=self.title)

    def welcome_back_instructions(self) -> str:
        return WELCOME_BACK.format(title=self.title)

    def opening_instructions(self) -> str:
        return OPENING.format(title=self.title)


def tutor_class(kind: TutorKind) -> type[Tutor]:
    """The class a tutor of `kind` is made as: its own (e.g. `MathAgent`), else `Tutor`."""
    return _REGISTRY.get(kind, Tutor)


def _measure_gap(
    userdata: SessionUserdata, note: HandoffNote, line: SpeechHandle, reply: SpeechHandle
) -> None:
    """Report the silence between the line's last audio and the reply's first audio (known
    only when audio was played: the framework stamps both on the spoken messages)."""
    line_end = _speaking_time(line, "stopped_speaking_at")
    reply_start = _speaking_time(reply, "started_speaking_at")
    if line_end is not None and reply_start is not None:
        handoff_gap(userdata, note, max(0.0, reply_start - line_end))


def _speaking_time(handle: SpeechHandle, key: str) -> float | None:
    for item in handle.chat_items:
        if isinstance(item, llm.ChatMessage) and item.role == "assistant":
            value = item.metrics.get(key)
            if isinstance(value, int | float):
                return float(value)
    return None


async def _silent_until(event: asyncio.Event) -> AsyncIterator[rtc.AudioFrame]:
    await event.wait()
    return
    yield  # an async generator that plays nothing
