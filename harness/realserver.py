"""The real-server stack for tests and benchmarks: a LiveKit server (v1.9.12 from
`../shared/livekit-server/`), the wire-compatible model fake on 127.0.0.1, the tutor workers
as processes started the way compose starts them, and the web service.

Everything runs inside the network namespace of `../shared/livekit-server/in-netns.sh`
(WebRTC gathers no candidates on loopback): `realserver_problem()` says why the stack cannot
run here, or nothing. Every process writes its log under one run directory, kept for a
person to read; `worker_log_problems` finds the ERROR and "event loop blocked" lines in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from livekit import api

from agent.config.settings import LiveKitSettings
from agent.dispatch.metadata import parse_dispatch_metadata
from harness import REPO
from harness.fakes.openai_server import (
    FAST_VOICE_SECONDS_PER_CHAR,
    ChatScript,
    FakeOpenAI,
    RealtimeScript,
    Transcriber,
)
from harness.fakes.production import (
    SEVEN_EIGHTS,
    chat_script,
    model_settings,
    moderation_script,
    realtime_script,
)
from harness.student import Student
from harness.wav import read_wav, write_wav

SHARED_SERVER = REPO.parent / "shared" / "livekit-server"
NODE_IP = "10.99.0.1"
# the server version this tier runs (compose pins the same image: tests/wire/test_stack.py)
TESTED_SERVER = "v1.9.12"
API_KEY_ID = "realserver-tests"
# a test key pair for a server that exists only inside this run's namespace
API_SECRET = "realserver-tests-secret-of-at-least-32-chars"
# what the fake models cost, as first measured with them (issue 20): LLM first token 0.4 s,
# speech and realtime 0.3 s
LLM_TTFT = 0.4
TTS_TTFB = 0.3
STARTUP_TIMEOUT = 90.0
RATE_48K = 48_000
# SDK lines that are the SDK's own noise, shown so by a bare `rtc.Room` reproduction
# (tests/realserver/test_sdk_noise.py), ignored by their exact text only: the Rust SDK
# (livekit 1.1.21) with server v1.9.12 logs this ERROR on every connect; the handle line is
# a warning the server's README names
SDK_DATA_TRACK_ERROR = "publisher data channel '_data_track' closed unexpectedly"
SDK_NOISE = (SDK_DATA_TRACK_ERROR, "Attempted to drop unknown FFI handle")


def server_binary() -> Path | None:
    """`LIVEKIT_SERVER_BIN`, else what `../shared/livekit-server/install.sh` unpacks."""
    if configured := os.environ.get("LIVEKIT_SERVER_BIN"):
        return Path(configured)
    install = SHARED_SERVER / "install.sh"
    if not install.exists():
        return None
    done = subprocess.run([str(install)], capture_output=True, text=True, timeout=300)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def in_namespace() -> bool:
    """True when this process can bind the namespace's media address (so WebRTC works)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((NODE_IP, 0))
        except OSError:
            return False
    return True


def realserver_problem() -> str | None:
    """Why the real-server tier cannot run here, or None."""
    binary = server_binary()
    if binary is None or not binary.exists():
        return "no LiveKit server: set LIVEKIT_SERVER_BIN or provide ../shared/livekit-server"
    if not in_namespace():
        return (
            f"not inside the test network namespace ({NODE_IP} is not ours): run "
            "../shared/livekit-server/in-netns.sh uv run pytest -m realserver"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes ---


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_for_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until `pattern` (a regex) appears in the log; fails if the process exits first."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not wanted.search(self.text()):
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {pattern!r} in {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the process alone, as `docker stop` does (a worker drains and stops
        its job processes itself), then SIGKILL to the whole group after `timeout`."""
        if self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.popen.wait, timeout)
            self.kill()
            await asyncio.to_thread(self.popen.wait, 5)
        return self.popen.returncode


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the job processes stop with it
        )
    return Process(name, popen, log)


# --- the LiveKit server ---


class ServesOnLoopback:
    """The URLs of a LiveKit server (or the one URL in front of several) on `port`."""

    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LiveKitServer(ServesOnLoopback):
    process: Process
    port: int


def server_config(
    port: int, udp: tuple[int, int], redis: str | None = None, webhook: str | None = None
) -> str:
    """The server's `livekit.yaml`; `webhook`: where it posts its events (signed with the
    API key, as compose's `livekit.yaml` does)."""
    lines = [
        f"port: {port}",
        "bind_addresses: [127.0.0.1, " + NODE_IP + "]",
        "rtc:",
        f"  tcp_port: {port + 1}",
        f"  port_range_start: {udp[0]}",
        f"  port_range_end: {udp[1]}",
        "  use_external_ip: false",
        f"  node_ip: {NODE_IP}",
        "keys:",
        f"  {API_KEY_ID}: {API_SECRET}",
        "logging:",
        "  level: info",
    ]
    if redis:
        lines += ["redis:", f"  address: {redis}"]
    if webhook:
        lines += ["webhook:", f"  api_key: {API_KEY_ID}", "  urls:", f"    - {webhook}"]
    return "\n".join(lines) + "\n"


async def start_livekit(
    log_dir: Path,
    *,
    name: str = "livekit",
    port: int = 7880,
    udp: tuple[int, int] = (50000, 50100),
    redis: str | None = None,
    webhook: str | None = None,
) -> LiveKitServer:
    binary = server_binary()
    assert binary is not None, "no LiveKit server binary"
    config = log_dir / f"{name}.yaml"
    config.write_text(server_config(port, udp, redis, webhook))
    process = spawn(name, [str(binary), "--config", str(config)], dict(os.environ), log_dir)
    server = LiveKitServer(process, port)
    await wait_until_answering(server.http_url, process, 30)
    return server


async def wait_until_answering(url: str, process: Process, timeout: float) -> None:
    """Until `url` answers 200; fails if `process` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with httpx.AsyncClient(timeout=1) as client:
        while True:
            try:
                answer = await client.get(url)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:80]!r}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if process.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{process.name} did not start ({url}: {last}):\n{process.tail()}"
                )
            await asyncio.sleep(0.05)  # nothing to wait on but the port: ask again


# --- the model fake, in a thread of its own (it outlives any one test's event loop) ---


class Questions:
    """The fake STT: what the student says next, in order. A segment with under 0.3 s of
    loud audio (a cough, a codec artefact) is heard as nothing; with no question queued, the
    `default` one (a class asking the same)."""

    MIN_SPEECH = 0.3

    def __init__(self, default: str = "") -> None:
        self.queue: deque[str] = deque()
        self.default = default
        self.heard: list[str] = []
        self._lock = threading.Lock()

    def expect(self, text: str) -> None:
        with self._lock:
            self.queue.append(text)

    def __call__(self, audio: bytes) -> str:
        if loud_seconds(audio) < self.MIN_SPEECH:
            return ""
        with self._lock:
            text = self.queue.popleft() if self.queue else self.default
            self.heard.append(text)
        return text


def loud_seconds(audio: bytes, threshold: float = 0.02) -> float:
    """Seconds of 10 ms windows louder than `threshold` RMS in a WAV or 24 kHz PCM."""
    rate = 24_000
    if audio.startswith(b"RIFF"):
        with wave.open(io.BytesIO(audio)) as w:
            rate = w.getframerate()
            audio = w.readframes(w.getnframes())
    samples = np.frombuffer(audio[: len(audio) // 2 * 2], dtype=np.int16).astype(np.float32)
    window = rate // 100
    usable = len(samples) // window * window
    if not usable:
        return 0.0
    rms = np.sqrt((samples[:usable].reshape(-1, window) / 32768.0) ** 2).mean(axis=1)
    return float((rms > threshold).sum()) / 100


@dataclass
class ModelFake:
    """The wire-compatible OpenAI fake on 127.0.0.1, served from a thread."""

    questions: Questions = field(default_factory=Questions)
    transcribe: Transcriber | None = None  # instead of `questions` (e.g. spoken turns' parts)
    chat: ChatScript = chat_script
    realtime: RealtimeScript = realtime_script
    tts_seconds_per_char: float = FAST_VOICE_SECONDS_PER_CHAR
    fake: FakeOpenAI | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.fake is not None
        return self.fake.url

    def start(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self.fake = FakeOpenAI(
                chat=self.chat,
                moderate=moderation_script,
                realtime=self.realtime,
                transcribe=self.transcribe or self.questions,
                llm_ttft=LLM_TTFT,
                tts_ttfb=TTS_TTFB,
                tts_seconds_per_char=self.tts_seconds_per_char,
            )
            loop.run_until_complete(self.fake.__aenter__())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.fake.__aexit__(None, None, None))
            loop.close()

        self._loop, self._thread = loop, threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the model fake did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# --- the workers and the web service, as compose starts them ---

WORKER_MODULES = {
    "learning-orchestrator": "agent/workers/orchestrator.py",
    "learning-english": "agent/workers/english.py",
}


def stack_settings(url: str) -> LiveKitSettings:
    """The LiveKit settings a student's token is signed with on this stack (`url`: signalling)."""
    return LiveKitSettings(
        livekit_url=url, livekit_api_key=API_KEY_ID, livekit_api_secret=API_SECRET
    )


def stack_env(server: LiveKitServer | Cluster, models: ModelFake, run_dir: Path) -> dict[str, str]:
    """The environment compose would give every service (its `.env`), pointed at this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "OPENAI_"))}
    env.update(
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY_ID,
        LIVEKIT_API_SECRET=API_SECRET,
        **{name.upper(): value for name, value in model_settings(models.url).items()},
        RECORDS_URL=f"sqlite+aiosqlite:///{run_dir / 'tutor.db'}",
        LINE_CACHE_DIR=str(run_dir / "lines"),
        WORKER_HTTP_PORT="0",
        # two warm job processes each: a conversation at a time, on a 2-core machine
        NUM_IDLE_PROCESSES="2",
        PYTHONUNBUFFERED="1",
    )
    return env


async def start_worker(
    worker: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    name: str | None = None,
    cpus: str | None = None,
) -> Process:
    """`python -m livekit.agents start agent/workers/<worker>.py`, as compose runs it;
    returns once the worker has registered with the server. `cpus`: pinned there with
    `taskset -c` (its job processes with it)."""
    # a temp directory of its own, as in a container (its health port file); short, for the
    # forkserver's socket path
    tmp = tempfile.mkdtemp(prefix="vt-")
    argv = [sys.executable, "-m", "livekit.agents", "start", WORKER_MODULES[worker]]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    process = spawn(name or worker, argv, env | {"TMPDIR": tmp}, log_dir)
    await process.wait_for_line(r"registered worker")
    return process


async def start_web(env: dict[str, str], log_dir: Path, port: int) -> Process:
    """`python -m agent web` (compose service `web`)."""
    web_env = env | {"WEB_HOST": "127.0.0.1", "WEB_PORT": str(port)}
    process = spawn("web", [sys.executable, "-m", "agent", "web"], web_env, log_dir)
    await wait_until_answering(f"http://127.0.0.1:{port}/healthz", process, STARTUP_TIMEOUT)
    return process


# --- what the logs say ---

_BLOCKED = re.compile(r"event loop blocked", re.I)
_ERROR = re.compile(r'"level":\s*"(ERROR|CRITICAL)"|\b(ERROR|CRITICAL)\b')


def _matching(pattern: re.Pattern[str], logs: tuple[Path, ...]) -> list[str]:
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if pattern.search(line) and not any(noise in line for noise in SDK_NOISE):
                found.append(f"{log.name}: {line[:400]}")
    return found


def worker_log_errors(*logs: Path) -> list[str]:
    """Every ERROR (or CRITICAL) line of these logs, but the SDK's own noise."""
    return _matching(_ERROR, logs)


def worker_log_stalls(*logs: Path) -> list[str]:
    """Every "event loop blocked" line (the framework's loop monitor: over 100 ms). A
    timing, so benchmarks count them; tests do not assert on them."""
    return _matching(_BLOCKED, logs)


@contextlib.contextmanager
def run_directory(base: Path | None = None) -> Iterator[Path]:
    """Where a run's logs and records go (kept: `build/realserver/<time>` by default)."""
    root = base or REPO / "build" / "realserver"
    path = root / time.strftime("%Y%m%d-%H%M%S") / f"{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    yield path


def espeak_wav(text: str, folder: Path) -> Path:
    """`text` spoken by espeak-ng, as 48 kHz mono 16-bit WAV (what a microphone would give)."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "speech"
    target = folder / f"{name}.wav"
    if not target.exists():
        raw = folder / f"{name}.raw.wav"
        for tool in ("espeak-ng", "sox"):
            assert shutil.which(tool), f"{tool} is needed for spoken fixtures"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=60)
        subprocess.run(
            [
                "sox",
                str(raw),
                "-r",
                "48000",
                "-c",
                "1",
                "-b",
                "16",
                str(target),
                "gain",
                "-n",
                "-3",
            ],
            check=True,
            timeout=60,
        )
        raw.unlink()
    return target


def microphone_wav(
    folder: Path, name: str, script: list[tuple[float, Path]], seconds: float
) -> Path:
    """A fake microphone's file for Chromium: each WAV of `script` starting at its second,
    silence elsewhere, `seconds` long (Chromium loops the file)."""
    track = np.zeros(int(RATE_48K * seconds), dtype=np.int16)
    for at, path in script:
        speech, _ = read_wav(path)
        start = int(at * RATE_48K)
        track[start : start + len(speech)] = speech[: len(track) - start]
    return write_wav(folder / f"{name}.wav", track, RATE_48K)


async def eventually(  # type: ignore[no-untyped-def]
    read, good, timeout: float, what: str, interval: float = 0.2
):
    """Until `good(await read())`: for state only an API can tell (no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not good(value := await read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what} in {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)
    return value


# --- a student's steps and what the server says of a room ---

TURN = 60.0  # generous bound per step on a loaded 2-core machine; figures are bench's


async def ask(student: Student, models: ModelFake, speech_dir: Path, question: str) -> float:
    """Wait for the tutors to fall quiet, then say `question`; returns when it was said."""
    await student.wait_for(lambda: student.quiet_since(1.0), TURN, "a quiet moment")
    models.questions.expect(question)
    return await student.say(espeak_wav(question, speech_dir))


def bare_token(prefix: str, identity: str) -> str:
    """A join token for a fresh room named `prefix-…` and nothing else: no dispatch, no room
    configuration (an SDK measured or observed alone)."""
    return (
        api.AccessToken(API_KEY_ID, API_SECRET)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=f"{prefix}-{secrets.token_hex(4)}"))
        .to_jwt()
    )


async def room_state(server_api: api.LiveKitAPI, room: str) -> tuple[list[str], int]:
    """Who is in `room` (identities) and how many dispatches it still has, from the server
    (a room the server has closed has neither)."""

    async def exists() -> bool:
        rooms = await server_api.room.list_rooms(api.ListRoomsRequest(names=[room]))
        return bool(rooms.rooms)

    if not await exists():
        return [], 0
    try:
        people = await server_api.room.list_participants(api.ListParticipantsRequest(room=room))
        dispatches = await server_api.agent_dispatch.list_dispatch(room)
    except api.TwirpError:
        if not await exists():  # closed between the two questions
            return [], 0
        raise
    return [p.identity for p in people.participants], len(dispatches)


async def wait_until_empty(
    server_api: api.LiveKitAPI, room: str, timeout: float = TURN, interval: float = 0.1
) -> float:
    """Until the server says nobody is in `room` and no dispatch is left there; returns
    when that was first seen (the server API has no push for it: it is asked again)."""
    await eventually(
        lambda: room_state(server_api, room),
        lambda state: state == ([], 0),
        timeout,
        f"an empty {room}",
        interval,
    )
    return time.monotonic()


# --- the resume tests and benchmark ---


def session_of(joined: dict[str, Any]) -> str:
    claims = api.TokenVerifier(API_KEY_ID, API_SECRET).verify(joined["token"])
    [dispatch] = claims.room_config.agents  # type: ignore[union-attr]
    return parse_dispatch_metadata(dispatch.metadata)["session"]


def asked_once(microphone_dir: Path, name: str) -> Path:
    """A microphone that asks seven times eight at 8 s, then stays silent (long enough that
    Chromium's looping of the file never asks again within a test)."""
    return microphone_wav(
        microphone_dir, name, [(8.0, espeak_wav(SEVEN_EIGHTS, microphone_dir))], 300.0
    )


async def worker_holding(server_api: api.LiveKitAPI, room: str, workers: list[Process]) -> Process:
    """The worker process whose job serves `room` (the server names its worker id, which
    the worker logged when it registered)."""
    dispatches = await server_api.agent_dispatch.list_dispatch(room)
    ids = {job.state.worker_id for d in dispatches for job in d.state.jobs if job.state.worker_id}
    found = [w for w in workers if any(worker_id in w.text() for worker_id in ids)]
    assert len(found) == 1, (ids, [w.name for w in workers])
    return found[0]


# --- two LiveKit nodes behind one URL (the compose profile "cluster") ---


# name, signalling port, ICE/UDP range: two nodes on one host
NODES = (("node-a", 7890, (51000, 51099)), ("node-b", 7900, (52000, 52099)))


@dataclass
class Cluster(ServesOnLoopback):
    """Redis, two LiveKit nodes sharing it, and Caddy in front of both (one URL)."""

    redis: Process
    redis_address: str
    nodes: list[LiveKitServer]
    balancer: Process
    port: int  # the one URL's port
    log_dir: Path

    def node_holding(self, room: str) -> LiveKitServer:
        """The node the room's sessions run on (it logs each one it starts; the node a
        signal or an API call came in through logs the room too, but starts no session)."""
        started = re.compile(rf'starting RTC session\s+\{{"room": "{re.escape(room)}"')
        holding = [n for n in self.nodes if started.search(n.process.text())]
        assert len(holding) == 1, [n.process.name for n in holding]
        return holding[0]

    async def restart(self, node: LiveKitServer) -> None:
        """Start a killed node again, as it was (same name, ports and Redis)."""
        name, port, udp = next(spec for spec in NODES if spec[0] == node.process.name)
        again = await start_livekit(
            self.log_dir, name=name, port=port, udp=udp, redis=self.redis_address
        )
        self.nodes[self.nodes.index(node)] = again

    async def stop(self) -> None:
        for process in (self.balancer, *(n.process for n in self.nodes), self.redis):
            await process.stop()


BALANCER = """{{
\tadmin off
\tauto_https off
\tstorage file_system {storage}
}}
:{port} {{
\tbind 127.0.0.1 {node_ip}
\treverse_proxy {upstreams} {{
\t\tlb_policy first
\t\tlb_try_duration 10s
\t\tlb_try_interval 250ms
\t\thealth_uri /
\t\thealth_interval 1s
\t\thealth_timeout 1s
\t\tfail_duration 10s
\t}}
}}
"""


async def start_cluster(log_dir: Path) -> Cluster:
    redis_port = free_port()
    redis = spawn(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", ""],
        dict(os.environ),
        log_dir,
    )
    await redis.wait_for_line(r"Ready to accept connections")
    address = f"127.0.0.1:{redis_port}"
    nodes = [
        await start_livekit(log_dir, name=name, port=port, udp=udp, redis=address)
        for name, port, udp in NODES
    ]
    port = free_port()
    config = log_dir / "balancer.caddyfile"
    upstreams = " ".join(f"127.0.0.1:{node.port}" for node in nodes)
    config.write_text(
        BALANCER.format(port=port, node_ip=NODE_IP, upstreams=upstreams, storage=log_dir / "caddy")
    )
    balancer = spawn(
        "balancer",
        ["caddy", "run", "--adapter", "caddyfile", "--config", str(config)],
        dict(os.environ) | {"HOME": str(log_dir)},
        log_dir,
    )
    cluster = Cluster(redis, address, nodes, balancer, port, log_dir)
    await wait_until_answering(cluster.http_url, balancer, 30)
    return cluster
