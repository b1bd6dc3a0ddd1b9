"""A scripted LLM: a real `livekit.agents.llm.LLM` that replays canned replies.

Every request is recorded (with the model input it received and a monotonic timestamp),
so tests can assert what a tutor's model saw and in which order models were asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm

from agent.eval.fake import FunctionLLM, ModelRequest, Reply, ReplyStream, ToolCall

UNSCRIPTED = "(unscripted reply)"


__all__ = ["Reply", "Request", "RequestLog", "ScriptedLLM", "ToolCall", "call", "calls", "say"]


def say(text: str) -> Reply:
    return Reply(text=text)


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=(ToolCall(name, arguments),))


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> Reply:
    return Reply(tool_calls=tuple(ToolCall(n, a) for n, a in tool_calls))


class Request(ModelRequest):
    """A request a scripted model received, with what tests read of it."""

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


class ScriptedLLM(FunctionLLM):
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
        super().__init__(self.next_reply, name=name)
        self._script = script if callable(script) else list(script)
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

    request_type = Request

    def next_reply(self, request: Request) -> Reply:  # type: ignore[override]
        self.requests.append(request)
        self.log.requests.append(request)
        if callable(self._script):
            return self._script(request)
        return self._script.pop(0) if self._script else Reply(text=UNSCRIPTED)

    def stream(self, reply: Reply, **options: Any) -> llm.LLMStream:
        return _PacedStream(self, reply=reply, **options)


class _PacedStream(ReplyStream):
    """A scripted reply, after `ttft`, its words at `chars_per_second` when set."""

    def __init__(self, fake: ScriptedLLM, **kwargs: Any) -> None:
        super().__init__(fake, **kwargs)
        self._fake = fake

    async def _run(self) -> None:
        if self._fake.ttft:
            await asyncio.sleep(self._fake.ttft)
        await super()._run()

    def pieces(self) -> list[str]:
        if not self._fake.chars_per_second:
            return super().pieces()
        words = self.reply.text.split(" ") if self.reply.text else []
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    async def pace(self, piece: str) -> None:
        if self._fake.chars_per_second:
            await asyncio.sleep(len(piece) / self._fake.chars_per_second)
