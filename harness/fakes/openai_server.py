"""A wire-compatible OpenAI server on 127.0.0.1 that the real clients talk to.

One aiohttp app under `/v1`, answering what livekit-plugins-openai 1.8.9 and the `openai`
SDK send:

- `GET /models`; `POST /chat/completions` (streamed text and tool calls, then usage);
- `POST /audio/transcriptions` (multipart WAV, JSON answer); `POST /audio/speech` (PCM, as
  server-sent `speech.audio.delta` events or a raw body); `POST /moderations`;
- `GET /realtime` websocket: the realtime model (GA event names: session.update,
  conversation.item.create/delete, response.create/cancel, input audio; with the session's
  server turn detection on, an energy VAD cuts the input audio into user turns after its
  `silence_duration_ms`, transcribed and answered as OpenAI's server VAD does; with it off,
  what the client commits becomes the user's turn) and, with `intent=transcription`,
  streaming transcription (the same energy VAD ends each segment).

Replies are scripted like `harness.fakes.llm.ScriptedLLM`: a function of the request returns
a `Reply` (text and/or tool calls). Every request is recorded; one the fake does not
understand (a wrong key, a format it cannot produce, an unknown event) is answered with an
error and kept in `problems` with its body, so a test can fail on it with the body printed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from harness.fakes.llm import Reply

API_KEY = "test-openai-key-placeholder"
SAMPLE_RATE = 24_000
CHUNK_SECONDS = 0.05
FAST_VOICE_SECONDS_PER_CHAR = 0.02  # 50 characters a second: quick tests
VOICE_SECONDS_PER_CHAR = 1 / 15  # a real voice's pace, about 150 words a minute
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids)}"


@dataclass
class ChatCall:
    """What a chat completion request asked, as a script sees it."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[str]

    def texts(self, role: str | None = None) -> list[str]:
        """The text of each message (of `role`), in order; content sent as parts (e.g.
        with a prompt-cache breakpoint) is joined."""
        found = []
        for m in self.messages:
            if role is not None and m["role"] != role:
                continue
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str):
                found.append(content)
        return found

    def last_user(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""


@dataclass
class RealtimeCall:
    """A `response.create` on a realtime session: the conversation and the session config."""

    model: str
    session: dict[str, Any]
    items: list[dict[str, Any]]
    instructions: str | None

    def texts(self, role: str | None = None) -> list[str]:
        found = []
        for item in self.items:
            if item.get("type") == "message" and (role is None or item.get("role") == role):
                found += [
                    c.get("text") or c.get("transcript")
                    for c in item.get("content", [])
                    if c.get("text") or c.get("transcript")
                ]
        return found

    def last_user(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""


ChatScript = Callable[[ChatCall], Reply]
RealtimeScript = Callable[[RealtimeCall], Reply]
Transcriber = Callable[[bytes], str]  # WAV (or raw PCM for streaming) -> text
Moderator = Callable[[str], dict[str, float]]  # text -> category scores


@dataclass
class Recorded:
    path: str
    body: Any  # JSON, form fields (without the audio), or a websocket client event
    at: float = field(default_factory=time.monotonic)


class FakeOpenAI:
    """Use `async with FakeOpenAI(...) as server:` and point clients at `server.url`."""

    def __init__(
        self,
        *,
        chat: ChatScript | None = None,
        realtime: RealtimeScript | None = None,
        transcribe: Transcriber | None = None,
        moderate: Moderator | None = None,
        api_key: str = API_KEY,
        llm_ttft: float = 0.0,
        tts_ttfb: float = 0.0,
        tts_seconds_per_char: float = FAST_VOICE_SECONDS_PER_CHAR,
        moderation_delay: float = 0.0,
    ) -> None:
        self.chat = chat or (lambda call: Reply(text="(unscripted reply)"))
        self.realtime = realtime or (lambda call: Reply(text="(unscripted reply)"))
        self.transcribe = transcribe or (lambda audio: "")
        self.moderate = moderate or (lambda text: {})
        self.api_key = api_key
        self.llm_ttft = llm_ttft
        self.tts_ttfb = tts_ttfb
        self.tts_seconds_per_char = tts_seconds_per_char
        self.moderation_delay = moderation_delay
        # one delay per coming moderation request, before `moderation_delay` applies again
        self.moderation_delays: deque[float] = deque()
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.down = False  # answer every request with 503 (an outage)
        self.url = ""
        self.ws_url = ""
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/", self._root)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/v1/realtime", self._realtime)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self.ws_url = f"ws://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # what a test reads

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """Realtime client events of `event_type`, in order."""
        return [
            r.body
            for r in self.requests
            if r.path == "/v1/realtime" and r.body.get("type") == event_type
        ]

    def check(self) -> None:
        """Fail with every request the fake did not understand."""
        if self.problems:
            raise AssertionError(
                "requests the fake OpenAI did not understand:\n" + "\n".join(self.problems)
            )

    # plumbing

    def _problem(self, what: str, body: Any) -> None:
        self.problems.append(f"{what}: {json.dumps(body, default=str)[:2000]}")

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return _error(503, "server_error", "the fake is down")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._problem(f"{request.method} {request.path} with a wrong key", {})
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        response = await handler(request)
        if not response.prepared:
            response.headers["x-request-id"] = _id("req")
        return response

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.path, {}))
        models = ["gpt-4.1-mini", "gpt-4o-mini-tts", "gpt-4o-mini-transcribe", "gpt-realtime"]
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}
            for name in models
        ]
        return web.json_response({"object": "list", "data": data})

    # chat completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, body))
        if not body.get("stream") or not isinstance(body.get("messages"), list):
            self._problem("chat completion without stream or messages", body)
            return _error(400, "invalid_request_error", "expected a streamed chat completion")
        tools = [t["function"]["name"] for t in body.get("tools", []) if t.get("function")]
        reply = self.chat(ChatCall(body["model"], body["messages"], tools))
        unknown = [c.name for c in reply.tool_calls if c.name not in tools]
        if unknown:
            self._problem(f"script called tools not offered {unknown}", body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.llm_ttft:
            await asyncio.sleep(self.llm_ttft)
        chunk_id = _id("chatcmpl")

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": choices,
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
        for word in _words(reply.text):
            await send([{"index": 0, "delta": {"content": word}, "finish_reason": None}])
        for index, tool_call in enumerate(reply.tool_calls):
            first = {
                "index": index,
                "id": _id("call"),
                "type": "function",
                "function": {"name": tool_call.name, "arguments": ""},
            }
            await send([{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}])
            arguments = {"index": index, "function": {"arguments": json.dumps(tool_call.arguments)}}
            await send([{"index": 0, "delta": {"tool_calls": [arguments]}, "finish_reason": None}])
        finish = "tool_calls" if reply.tool_calls else "stop"
        await send([{"index": 0, "delta": {}, "finish_reason": finish}])
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # audio

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: v for k, v in form.items() if k != "file"}
        self.requests.append(Recorded(request.path, fields))
        upload = form.get("file")
        audio = upload.file.read() if isinstance(upload, web.FileField) else None
        if audio is None or not audio.startswith(b"RIFF") or "model" not in fields:
            self._problem("transcription without a WAV file or a model", fields)
            return _error(400, "invalid_request_error", "expected a WAV file and a model")
        if fields.get("response_format", "json") not in ("json", "verbose_json"):
            self._problem("transcription format the fake cannot produce", fields)
            return _error(400, "invalid_request_error", "unsupported response_format")
        return web.json_response({"text": self.transcribe(audio)})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, body))
        if body.get("response_format") != "pcm" or not body.get("input") or not body.get("voice"):
            self._problem("speech the fake cannot produce (it makes pcm only)", body)
            return _error(400, "invalid_request_error", "unsupported speech request")
        seconds = max(CHUNK_SECONDS, len(body["input"]) * self.tts_seconds_per_char)
        pcm = _tone(seconds)
        if self.tts_ttfb:
            await asyncio.sleep(self.tts_ttfb)
        if body.get("stream_format") == "sse":
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "x-request-id": _id("req")}
            )
            await response.prepare(request)
            step = int(SAMPLE_RATE * CHUNK_SECONDS) * 2
            for start in range(0, len(pcm), step):
                delta = base64.b64encode(pcm[start : start + step]).decode()
                event = {"type": "speech.audio.delta", "audio": delta}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            done = {"type": "speech.audio.done", "usage": {"input_tokens": 5, "output_tokens": 9}}
            await response.write(f"data: {json.dumps(done)}\n\n".encode())
            await response.write_eof()
            return response
        return web.Response(body=pcm, content_type="audio/pcm")

    async def _moderations(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded(request.path, body))
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not body.get("model"):
            self._problem("moderation without input or model", body)
            return _error(400, "invalid_request_error", "expected input and model")
        delay = self.moderation_delays.popleft() if self.moderation_delays else 0.0
        if delay or self.moderation_delay:
            await asyncio.sleep(delay or self.moderation_delay)
        results = []
        for text in texts:
            scores = {name: 0.0001 for name in MODERATION_CATEGORIES} | self.moderate(str(text))
            results.append(
                {
                    "flagged": any(score >= 0.5 for score in scores.values()),
                    "categories": {name: score >= 0.5 for name, score in scores.items()},
                    "category_scores": scores,
                    "category_applied_input_types": {name: ["text"] for name in scores},
                }
            )
        return web.json_response({"id": _id("modr"), "model": body["model"], "results": results})

    # realtime websocket

    async def _realtime(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        model = request.query.get("model", "")
        try:
            if request.query.get("intent") == "transcription":
                await _Transcription(self, ws).run()
            else:
                await _RealtimeSession(self, ws, model).run()
        finally:
            self._sockets.discard(ws)
        return ws


class _RealtimeSession:
    """One realtime model connection: keeps the conversation, answers responses."""

    def __init__(self, fake: FakeOpenAI, ws: web.WebSocketResponse, model: str) -> None:
        self.fake = fake
        self.ws = ws
        self.model = model
        self.session: dict[str, Any] = {"output_modalities": ["audio"]}
        self.items: list[dict[str, Any]] = []
        self.responding: asyncio.Task[None] | None = None
        self.vad = _EnergyVAD()
        self.buffer = bytearray()  # audio since the last commit or clear (the client's turns)
        self.word_ends: dict[str, list[tuple[float, str]]] = {}  # item: (audio ms, word) each

    def _server_turns(self) -> dict[str, Any] | None:
        """The session's server turn detection (OpenAI's default is on), None when off."""
        audio_input = self.session.get("audio", {}).get("input", {})
        if "turn_detection" not in audio_input:
            return {"type": "server_vad", "create_response": True}
        return audio_input["turn_detection"]

    async def user_turn(self, pcm: bytes) -> None:
        """Speech the VAD ended: committed, added as a user item, transcribed, answered."""
        item_id = self.vad.item_id
        await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": item_id,
                         "audio_end_ms": self.vad.position_ms})  # fmt: skip
        await self.commit(item_id, pcm)
        turns = self._server_turns() or {}
        if turns.get("create_response", True) and (
            self.responding is None or self.responding.done()
        ):
            self.responding = asyncio.create_task(self.respond({}))

    async def commit(self, item_id: str, pcm: bytes) -> None:
        """Audio committed as the user's message item, then transcribed (as the model's input
        transcription does, after the commit)."""
        previous = self.items[-1]["id"] if self.items else None
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id,
                         "previous_item_id": previous})  # fmt: skip
        item = {"id": item_id, "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
        self.items.append(item)
        await self.send({"type": "conversation.item.added", "previous_item_id": previous,
                         "item": item})  # fmt: skip
        transcript = self.fake.transcribe(pcm)
        item["content"] = [{"type": "input_audio", "transcript": transcript}]
        await self.send({"type": "conversation.item.input_audio_transcription.completed",
                         "item_id": item_id, "content_index": 0,
                         "transcript": transcript})  # fmt: skip

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", _id("event"))
        if not self.ws.closed:
            await self.ws.send_json(event)

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": {"model": self.model}})
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            kind = event.get("type", "")
            recorded = event
            if kind == "input_audio_buffer.append":
                recorded = {"type": kind, "bytes": len(event.get("audio", "")) * 3 // 4}
            self.fake.requests.append(Recorded("/v1/realtime", recorded))
            await self.handle(kind, event)
        if self.responding is not None:
            self.responding.cancel()

    async def handle(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "session.update":
            self.session = _merge(self.session, event.get("session", {}))
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "conversation.item.create":
            item = event["item"]
            previous = self.items[-1]["id"] if self.items else None
            self.items.append(item)
            await self.send(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
            )
        elif kind == "conversation.item.delete":
            self.items = [i for i in self.items if i.get("id") != event.get("item_id")]
            await self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        elif kind == "conversation.item.truncate":
            self._truncate(event["item_id"], event.get("audio_end_ms", 0))
            await self.send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": event["item_id"],
                    "content_index": event.get("content_index", 0),
                    "audio_end_ms": event.get("audio_end_ms", 0),
                }
            )
        elif kind == "response.create":
            self.responding = asyncio.create_task(self.respond(event.get("response") or {}))
        elif kind == "response.cancel":
            if self.responding is not None and not self.responding.done():
                self.responding.cancel()
        elif kind == "input_audio_buffer.append":
            pcm = base64.b64decode(event.get("audio", ""))
            if (turns := self._server_turns()) is None:
                self.buffer += pcm
            else:
                ended = self.vad.feed(pcm, turns.get("silence_duration_ms"))
                if self.vad.started is not None:
                    await self.send({"type": "input_audio_buffer.speech_started",
                                     "item_id": self.vad.item_id,
                                     "audio_start_ms": self.vad.started})  # fmt: skip
                if ended is not None:
                    await self.user_turn(ended)
        elif kind == "input_audio_buffer.clear":
            self.vad.reset()
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "input_audio_buffer.commit":
            pcm, self.buffer = bytes(self.buffer), bytearray()
            if len(pcm) < SAMPLE_RATE * 2 // 10:  # the model refuses under 100 ms of audio
                too_small = "buffer too small: at least 100 ms of audio is needed"
                await self._refuse(event, "input_audio_buffer_commit_empty", too_small)
            else:
                await self.commit(_id("item"), pcm)
        else:
            self.fake._problem(f"realtime event the fake does not handle: {kind}", event)
            await self._refuse(event, "unknown_event", f"unknown event {kind}")

    async def _refuse(self, event: dict[str, Any], code: str, message: str) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message,
                 "event_id": event.get("event_id")}  # fmt: skip
        await self.send({"type": "error", "error": error})

    def _truncate(self, item_id: str, audio_end_ms: float) -> None:
        """An assistant item cut where its listener stopped hearing it: as OpenAI does, its
        transcript keeps only the words whose audio was heard."""
        heard = "".join(
            word for end, word in self.word_ends.get(item_id, []) if end <= audio_end_ms
        )
        for index, item in enumerate(self.items):
            if item.get("id") == item_id and item.get("role") == "assistant":
                content = [{"type": "output_audio", "transcript": heard.strip()}]
                self.items[index] = {**item, "content": content}

    async def respond(self, options: dict[str, Any]) -> None:
        response_id = _id("resp")
        status = "completed"
        output: list[dict[str, Any]] = []
        await self.send(
            {
                "type": "response.created",
                "response": {
                    "id": response_id,
                    "object": "realtime.response",
                    "status": "in_progress",
                    "metadata": options.get("metadata"),
                    "output": [],
                },
            }
        )
        try:
            instructions = options.get("instructions") or self.session.get("instructions")
            call = RealtimeCall(self.model, self.session, list(self.items), instructions)
            reply = self.fake.realtime(call)
            if self.fake.llm_ttft:
                await asyncio.sleep(self.fake.llm_ttft)
            if reply.text:
                output.append(await self._message(response_id, reply.text))
            for tool_call in reply.tool_calls:
                output.append(
                    await self._function_call(response_id, tool_call.name, tool_call.arguments)
                )
        except asyncio.CancelledError:
            status = "cancelled"
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        await self.send(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "object": "realtime.response",
                    "status": status,
                    "output": output,
                    "usage": usage,
                },
            }
        )

    async def _added(self, response_id: str, item: dict[str, Any]) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )

    async def _message(self, response_id: str, text: str) -> dict[str, Any]:
        audio = "audio" in self.session.get("output_modalities", ["audio"])
        item_id = _id("item")
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress",
                "content": []}  # fmt: skip
        await self._added(response_id, item)
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0,
                 "content_index": 0}  # fmt: skip
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self.send({"type": "response.content_part.added", **where, "part": part})
        ends = self.word_ends[item_id] = []
        for word in _words(text):
            if audio:
                pcm = _tone(max(CHUNK_SECONDS, len(word) * self.fake.tts_seconds_per_char))
                ends.append(
                    ((ends[-1][0] if ends else 0.0) + len(pcm) / 2 / SAMPLE_RATE * 1000, word)
                )
                delta = base64.b64encode(pcm).decode()
                await self.send({"type": "response.output_audio.delta", **where, "delta": delta})
                await self.send(
                    {"type": "response.output_audio_transcript.delta", **where, "delta": word}
                )
            else:
                await self.send({"type": "response.output_text.delta", **where, "delta": word})
        content = (
            {"type": "output_audio", "transcript": text}
            if audio
            else {"type": "output_text", "text": text}
        )
        done = {**item, "status": "completed", "content": [content]}
        self.items[-1] = done
        await self.send({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": 0, "item": done})  # fmt: skip
        return done

    async def _function_call(
        self, response_id: str, name: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        item = {"id": _id("item"), "type": "function_call", "status": "in_progress",
                "call_id": _id("call"), "name": name, "arguments": ""}  # fmt: skip
        await self._added(response_id, item)
        done = {**item, "status": "completed", "arguments": json.dumps(arguments)}
        self.items[-1] = done
        await self.send({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": 0, "item": done})  # fmt: skip
        return done


class _EnergyVAD:
    """Cuts 24 kHz PCM into speech segments by loudness, as a server VAD would: a segment
    ends after `SILENCE_TO_END` s of quiet, or the session's `silence_duration_ms`. It judges
    loudness only, so `semantic_vad` is heard as this too."""

    SILENCE_TO_END = 0.35
    THRESHOLD = 0.02  # RMS, full scale 1

    def __init__(self) -> None:
        self.reset()
        self.position = 0.0

    def reset(self) -> None:
        self.speech = bytearray()
        self.speaking = False
        self.silence = 0.0
        self.item_id = ""
        self.started: int | None = None  # set by the feed that started a segment

    @property
    def position_ms(self) -> int:
        return int(self.position * 1000)

    def feed(self, pcm: bytes, silence_ms: int | None = None) -> bytes | None:
        """Take audio; return a segment's audio once its speech has ended (after
        `silence_ms` of quiet; None: `SILENCE_TO_END`)."""
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        loud = bool(len(samples)) and float(np.sqrt((samples**2).mean())) > self.THRESHOLD
        self.position += len(samples) / SAMPLE_RATE
        self.started = None
        if loud and not self.speaking:
            self.speaking, self.item_id = True, _id("item")
            self.started = self.position_ms
        if not self.speaking:
            return None
        self.speech += pcm
        self.silence = 0.0 if loud else self.silence + len(samples) / SAMPLE_RATE
        if self.silence < (self.SILENCE_TO_END if silence_ms is None else silence_ms / 1000):
            return None
        segment = bytes(self.speech)
        self.speech.clear()
        self.speaking = False
        return segment


class _Transcription:
    """A streaming transcription session: an energy VAD cuts segments, each transcribed."""

    def __init__(self, fake: FakeOpenAI, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.vad = _EnergyVAD()

    async def run(self) -> None:
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            kind = event.get("type", "")
            if kind == "input_audio_buffer.append":
                self.fake.requests.append(Recorded("/v1/realtime#transcription", {"type": kind}))
                await self.audio(base64.b64decode(event["audio"]))
            elif kind == "session.update":
                self.fake.requests.append(Recorded("/v1/realtime#transcription", event))
            elif kind != "input_audio_buffer.commit":
                self.fake._problem(f"transcription event the fake does not handle: {kind}", event)

    async def audio(self, pcm: bytes) -> None:
        ended = self.vad.feed(pcm)
        if self.vad.started is not None:
            await self.ws.send_json({"type": "input_audio_buffer.speech_started",
                                     "item_id": self.vad.item_id,
                                     "audio_start_ms": self.vad.started})  # fmt: skip
        if ended is None:
            return
        await self.ws.send_json({"type": "input_audio_buffer.speech_stopped",
                                 "item_id": self.vad.item_id,
                                 "audio_end_ms": self.vad.position_ms})  # fmt: skip
        await self.ws.send_json(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": self.vad.item_id,
                "content_index": 0,
                "transcript": self.fake.transcribe(ended),
            }
        )


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status)


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if w]


def _tone(seconds: float) -> bytes:
    """Quiet 440 Hz, 16-bit mono PCM at 24 kHz (audible in a test, never silence)."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16).tobytes()


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def wav_seconds(wav: bytes) -> float:
    """The duration of a WAV file's audio (for transcribers that look at it)."""
    with wave.open(io.BytesIO(wav)) as w:
        return w.getnframes() / w.getframerate()
