"""An offline model for the harness (`--models fake`): a chat model that routes by keywords
and a moderator that flags by keywords. A floor to compare real models with, and what lets
the harness prove itself with no key; never a tutor for children."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from agent.safety.moderation import Direction, Verdict

_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One model turn: optional text, then optional tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ModelRequest:
    """What a model was asked: the conversation and the tools it may call."""

    chat_ctx: llm.ChatContext
    tool_names: list[str]
    llm_name: str = ""  # the asked model's name
    tool_choice: Any = None
    started_at: float = 0.0  # time.monotonic() when asked

    def latest_student_words(self) -> str:
        for item in reversed(self.chat_ctx.items):
            if item.type == "message" and item.role == "user":
                return item.text_content or ""
        return ""

    def answered_latest(self) -> bool:
        """Whether the model's last turn came after the student's last words."""
        for item in reversed(self.chat_ctx.items):
            if item.type == "message" and item.role == "user":
                return False
            if item.type in ("function_call", "function_call_output"):
                return True
        return False


class FunctionLLM(llm.LLM):
    """A `livekit.agents.llm.LLM` whose every reply is `reply(request)`; no network."""

    def __init__(self, reply: Callable[[ModelRequest], Reply], *, name: str = "function") -> None:
        super().__init__()
        self._reply = reply
        self.name = name

    @property
    def model(self) -> str:
        return self.name

    @property
    def provider(self) -> str:
        return "local"

    # the type of the requests it makes (a subclass may add to what a request tells)
    request_type: type[ModelRequest] = ModelRequest

    def request(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], tool_choice: Any
    ) -> ModelRequest:
        """What the model is asked, as it is asked."""
        return self.request_type(
            chat_ctx.copy(),
            [tool.id for tool in tools],
            llm_name=self.name,
            tool_choice=tool_choice,
            started_at=time.monotonic(),
        )

    def next_reply(self, request: Any) -> Reply:
        return self._reply(request)

    def stream(self, reply: Reply, **options: Any) -> llm.LLMStream:
        return ReplyStream(self, reply=reply, **options)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        tools = tools or []
        reply = self.next_reply(self.request(chat_ctx, tools, tool_choice))
        return self.stream(reply, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)


class ReplyStream(llm.LLMStream):
    """One reply as the framework reads a model's stream: its text, then its tool calls."""

    def __init__(
        self, model: llm.LLM, *, reply: Reply, chat_ctx: llm.ChatContext, **kwargs: Any
    ) -> None:
        super().__init__(model, chat_ctx=chat_ctx, **kwargs)
        self.reply = reply
        self.asked = chat_ctx

    async def _run(self) -> None:
        chunk_id = f"chunk_{next(_ids)}"
        for piece in self.pieces():
            self._event_ch.send_nowait(
                llm.ChatChunk(id=chunk_id, delta=llm.ChoiceDelta(role="assistant", content=piece))
            )
            await self.pace(piece)
        self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, usage=self.usage()))
        if self.reply.tool_calls:
            calls = [
                llm.FunctionToolCall(
                    name=call.name,
                    arguments=json.dumps(call.arguments),
                    call_id=f"call_{next(_ids)}",
                )
                for call in self.reply.tool_calls
            ]
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=chunk_id, delta=llm.ChoiceDelta(role="assistant", tool_calls=calls)
                )
            )

    def usage(self) -> llm.CompletionUsage:
        """A model's count of tokens, estimated as one per four characters."""
        asked = sum(len(item.text_content or "") for item in self.asked.messages())
        said = len(self.reply.text) + sum(
            len(json.dumps(c.arguments)) for c in self.reply.tool_calls
        )
        prompt, completion = asked // 4 + 1, said // 4 + 1
        return llm.CompletionUsage(
            completion_tokens=completion, prompt_tokens=prompt, total_tokens=prompt + completion
        )

    def pieces(self) -> list[str]:
        return [self.reply.text] if self.reply.text else []

    async def pace(self, piece: str) -> None:
        """Between pieces of text (none: all at once)."""


# the keyword router: words that point at each subject (and the tool that reaches it)
SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "math": ("times", "plus", "minus", "divided", "fraction", "multiply", "add", "subtract",
             "equation", "square root", "percent", "angle", "triangle", "sum", "half of"),
    "history": ("who was", "war", "king", "queen", "emperor", "battle", "ancient", "empire",
                "century", "pharaoh", "romans", "vikings", "revolution", "castle"),
    "english": ("spell", "noun", "verb", "adjective", "grammar", "rhyme", "synonym",
                "pronounce", "sentence", "plural", "meaning of the word", "punctuation"),
    "science": ("plant", "planet", "animal", "magnet", "gravity", "volcano", "photosynthesis",
                "the moon", "the sun", "skeleton", "force", "atom"),
}  # fmt: skip
GOODBYES = ("bye", "goodbye", "stop", "im done", "i'm done")
DISCLOSURES = (
    *("hurt myself", "hurting my", "hits me", "hurts me", "smacks me", "pega", "kill", "stab"),
    *("not be alive", "want to be alive", "touches me", "touching me", "send him photos"),
    *("send one back", "meet up", "scared", "trying to get in", "tablets", "gun", "jump off"),
    *("knife", "miss me if i was gone", "ran away", "no food", "beat me up", "get in"),
)


def keyword_reply(request: ModelRequest) -> Reply:
    """Route to the first subject whose words the student used and whose tool is offered;
    back to the main tutor on a goodbye; else answer."""
    if request.answered_latest():
        return Reply(text="Here is the answer, step by step.")
    words = request.latest_student_words().lower()
    for kind, cues in SUBJECT_WORDS.items():
        tool = f"route_to_{kind}"
        if tool in request.tool_names and any(cue in words for cue in cues):
            return Reply(tool_calls=(ToolCall(tool, {"question_summary": words}),))
    if any(cue in words for cue in GOODBYES) and "route_back_to_orchestrator" in request.tool_names:
        return Reply(tool_calls=(ToolCall("route_back_to_orchestrator", {"reason": words}),))
    return Reply(text="Good question! Let's think about it together.")


@dataclass
class KeywordModerator:
    """Flags a student's words as urgent when they carry a disclosure's words (the
    `agent.safety.moderation.Moderator` interface)."""

    cues: tuple[str, ...] = DISCLOSURES
    checks: int = field(default=0)

    async def check(self, text: str, *, direction: Direction, retry: bool = False) -> Verdict:
        self.checks += 1
        words = re.sub(r"[^a-z' ]", "", text.lower())
        if direction == "student" and any(cue in words for cue in self.cues):
            return Verdict(tier="urgent", categories=["self-harm"], scores={"self-harm": 0.9})
        return Verdict()

    async def aclose(self) -> None:
        return None


def keyword_llm(name: str = "fake") -> FunctionLLM:
    return FunctionLLM(keyword_reply, name=name)
