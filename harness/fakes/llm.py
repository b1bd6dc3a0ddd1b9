"""A scripted LLM: a real `livekit.agents.llm.LLM` that replays canned replies.

Every request is recorded (with the model input it received and a monotonic timestamp),
so tests can assert what a tutor's model saw and in which order models were asked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

UNSCRIPTED = "(unscripted reply)"
_call_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One scripted model turn: optional text, then optional tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


def say(text: str) -> Reply:
    return Reply(text=text)


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=(ToolCall(name, arguments),))


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> Reply:
    return Reply(tool_calls=tuple(ToolCall(n, a) for n, a in tool_calls))


@dataclass
class Request:
    llm_name: str
    chat_ctx: llm.ChatContext
    tool_names: list[str]
    tool_choice: Any
    started_at: float

    def texts(self, role: str | None = None) -> list[str]:
        return [
            item.text_content or ""
            for item in self.chat_ctx.items
            if item.type == "message" and (role is None or item.role == role)
        ]

    def all_text(self) -> str:
        """Everything the model was shown, as one string (messages and tool items)."""
        parts: list[str] = []
        for item in self.chat_ctx.items:
            if item.type == "message":
                parts.append(item.text_content or "")
            elif item.type == "function_call":
                parts.append(item.arguments)
            elif item.type == "function_call_output":
                parts.append(item.output)
        return "\n".join(parts)


@dataclass
class RequestLog:
    """Shared across several fake LLMs to see the global order of model requests."""

    requests: list[Request] = field(default_factory=list)

    def names(self) -> list[str]:
        return [r.llm_name for r in self.requests]


Script = Sequence[Reply] | Callable[[Request], Reply]


class ScriptedLLM(llm.LLM):
    """Replies from a script: a list consumed in order, or a function of the request.

    `ttft` delays the first chunk; `chars_per_second` paces the text (0 = all at once).
    When a list script runs out, the reply is `UNSCRIPTED` so a test can notice.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        name: str = "llm",
        log: RequestLog | None = None,
        ttft: float = 0.0,
        chars_per_second: float = 0.0,
    ) -> None:
        super().__init__()
        self._script = script if callable(script) else list(script)
        self.name = name
        self.log = log or RequestLog()
        self.requests: list[Request] = []
        self.ttft = ttft
        self.chars_per_second = chars_per_second

    @property
    def model(self) -> str:
        return f"scripted-{self.name}"

    @property
    def provider(self) -> str:
        return "tests"

    def next_reply(self, request: Request) -> Reply:
        if callable(self._script):
            return self._script(request)
        return self._script.pop(0) if self._script else Reply(text=UNSCRIPTED)

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
        request = Request(
            llm_name=self.name,
            chat_ctx=chat_ctx.copy(),
            tool_names=[t.id for t in (tools or [])],
            tool_choice=tool_choice,
            started_at=time.monotonic(),
        )
        self.requests.append(request)
        self.log.requests.append(request)
        return _ScriptedStream(
            self,
            reply=self.next_reply(request),
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(self, fake: ScriptedLLM, *, reply: Reply, **kwargs: Any) -> None:
        super().__init__(fake, **kwargs)
        self._fake = fake
        self._reply = reply

    async def _run(self) -> None:
        fake, reply = self._fake, self._reply
        chunk_id = f"chunk_{next(_call_ids)}"
        if fake.ttft:
            await asyncio.sleep(fake.ttft)
        if reply.text:
            pieces = _words(reply.text) if fake.chars_per_second else [reply.text]
            for piece in pieces:
                self._event_ch.send_nowait(
                    llm.ChatChunk(
                        id=chunk_id, delta=llm.ChoiceDelta(role="assistant", content=piece)
                    )
                )
                if fake.chars_per_second:
                    await asyncio.sleep(len(piece) / fake.chars_per_second)
        if reply.tool_calls:
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=chunk_id,
                    delta=llm.ChoiceDelta(
                        role="assistant",
                        tool_calls=[
                            llm.FunctionToolCall(
                                name=tc.name,
                                arguments=json.dumps(tc.arguments),
                                call_id=f"call_{next(_call_ids)}",
                            )
                            for tc in reply.tool_calls
                        ],
                    ),
                )
            )


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
