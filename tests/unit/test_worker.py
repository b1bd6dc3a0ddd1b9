"""The orchestrator worker's wiring, without a LiveKit server or network."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentServer
from livekit.plugins import openai

from agent.config.settings import load_settings
from agent.workers import orchestrator
from agent.workers.health import port_file
from agent.workers.models import pipeline_tutor_models
from agent.workers.server import PRELOAD_MODULES, publish_health_port, server_options
from harness import REPO


def test_server_registers_learning_orchestrator_for_explicit_dispatch() -> None:
    server = orchestrator.server
    assert server._agent_name == "learning-orchestrator"
    assert server._entrypoint_fnc is orchestrator.entrypoint
    assert server.setup_fnc is orchestrator.prewarm


def test_each_pipeline_tutor_gets_its_model_and_a_distinct_voice() -> None:
    settings = load_settings(math_llm_model="gpt-4.1", history_voice="onyx")
    models = pipeline_tutor_models(settings)

    assert set(models) == {"orchestrator", "math", "history", "english"}
    assert all(
        isinstance(m.llm, openai.LLM) and isinstance(m.tts, openai.TTS) for m in models.values()
    )
    assert models["math"].llm.model == "gpt-4.1"
    voices = {kind: m.tts._opts.voice for kind, m in models.items()}
    assert voices["history"] == "onyx"
    assert len(set(voices.values())) == len(voices)


def test_metrics_are_off_by_default_and_served_by_the_framework_when_a_port_is_set() -> None:
    assert "prometheus_port" not in server_options(load_settings(), "learning-orchestrator")
    options = server_options(load_settings(prometheus_port=9101), "learning-orchestrator")
    server = AgentServer(**options)
    assert server._prometheus_port == 9101
    # job processes' series are collected through a directory of this worker's own
    assert server._prometheus_multiproc_dir and "learning-orchestrator" in (
        server._prometheus_multiproc_dir
    )
    assert server._preload_modules == PRELOAD_MODULES


def test_the_forkserver_leaves_its_job_processes_no_first_time_work() -> None:
    """Imported in the forkserver, the module builds what a job's first reply would: the
    platform the model clients name (else `uname -p` in a subprocess) and the captions'
    syllable patterns; a job process forked from it starts with both."""
    import platform

    from livekit.agents.tokenize import _basic_hyphenator
    from openai._base_client import get_platform

    from agent.workers import inherited

    assert "agent.workers.inherited" in PRELOAD_MODULES
    _basic_hyphenator._get_hyphenator.cache_clear()
    platform._platform_cache.clear()  # type: ignore[attr-defined]
    platform._uname_cache = None  # type: ignore[attr-defined]
    inherited.build_inherited()
    assert _basic_hyphenator._get_hyphenator.cache_info().currsize == 1
    spawned: list[object] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        spawned.append(args)
        return real_popen(*args, **kwargs)

    subprocess.Popen = popen  # type: ignore[assignment,misc]
    try:
        get_platform()  # what the model clients' first request asks
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    assert spawned == []  # no `uname -p`: the platform was known


def test_the_workers_share_records_modules_through_their_forkserver() -> None:
    assert orchestrator.server._preload_modules == PRELOAD_MODULES
    for module in PRELOAD_MODULES:
        importlib.import_module(module)  # each name really is importable


def test_azure_settings_build_every_client_with_the_azure_constructors() -> None:
    import openai as openai_sdk

    from agent.config.roster import roster_for
    from agent.workers.models import moderation_client, realtime_tutor_models, session_stt

    settings = load_settings(
        azure_openai_endpoint="https://school.openai.azure.com",
        azure_openai_api_key="azure-key-placeholder",
        azure_openai_api_version="2024-10-21",
    )
    models = pipeline_tutor_models(settings)
    assert isinstance(models["math"].llm._client, openai_sdk.AsyncAzureOpenAI)
    assert isinstance(models["math"].tts._client, openai_sdk.AsyncAzureOpenAI)
    assert isinstance(session_stt(settings)._client, openai_sdk.AsyncAzureOpenAI)
    assert isinstance(moderation_client(settings), openai_sdk.AsyncAzureOpenAI)
    realtime = realtime_tutor_models(settings, roster_for(settings), "english").llm
    assert realtime._opts.is_azure and realtime._opts.azure_deployment == "gpt-realtime"


def test_prewarm_builds_the_model_clients_once_per_process_for_every_job() -> None:
    from types import SimpleNamespace

    from agent.records import RecordsStore
    from agent.safety.moderation import Moderator
    from agent.workers import english
    from agent.workers.resources import resources_of

    proc = SimpleNamespace(userdata={})
    orchestrator.prewarm(proc)  # type: ignore[arg-type]
    resources = resources_of(proc)  # type: ignore[arg-type]
    assert set(resources.tutor_models) == {"orchestrator", "math", "history", "english"}
    assert isinstance(resources.stt, openai.STT)
    assert isinstance(resources.store, RecordsStore)
    assert isinstance(resources.moderator, Moderator)
    realtime_proc = SimpleNamespace(userdata={})
    english.prewarm(realtime_proc)  # type: ignore[arg-type]
    assert isinstance(
        resources_of(realtime_proc).tutor_models["english"].llm,  # type: ignore[arg-type]
        openai.realtime.RealtimeModel,
    )
    # prewarm keeps fixed lines on disk for the process; other tests synthesise every time
    from agent.conversation.lines import LineCache, line_cache, set_line_cache

    assert line_cache().directory is not None
    set_line_cache(LineCache(None, keep=False))


async def test_turn_settings_reach_the_session_and_the_vad() -> None:
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata
    from agent.turns.options import turn_handling, vad_options

    settings = load_settings(
        turn_detector="vad",
        endpointing_mode="dynamic",
        min_endpointing_delay=0.4,
        max_endpointing_delay=1.6,
        vad_min_silence_duration=0.3,
        preemptive_tts=True,
        stt_streaming=True,
    )
    session = create_session(SessionUserdata(), turn_handling=turn_handling(settings))
    options = session.options
    assert options.endpointing["mode"] == "dynamic"
    assert (options.endpointing["min_delay"], options.endpointing["max_delay"]) == (0.4, 1.6)
    assert options.preemptive_generation["preemptive_tts"] is True
    assert options.turn_handling["turn_detection"] == "vad"
    assert vad_options(settings)["min_silence_duration"] == 0.3
    from agent.workers.models import session_stt

    assert session_stt(settings).capabilities.streaming is True
    # the shipped default ends a turn on the VAD's silence (measured on children's voices)
    assert turn_handling(load_settings())["turn_detection"] == "vad"


async def test_interruption_and_end_of_turn_threshold_settings_reach_the_session() -> None:
    from livekit.agents import inference

    from agent.config.settings import SettingsError
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata
    from agent.turns.options import turn_handling

    settings = load_settings(
        turn_detector="model",
        vad_min_silence_duration=0.3,
        interruption_min_duration=0.12,
        false_interruption_timeout=0.9,
        eot_threshold=0.2,
    )
    handling = turn_handling(settings)
    detector = handling["turn_detection"]
    assert isinstance(detector, inference.TurnDetector)
    assert detector.model == "turn-detector-v1-mini"
    assert await detector.stream().unlikely_threshold(None) == 0.2
    options = create_session(SessionUserdata(), turn_handling=handling).options
    assert options.interruption["min_duration"] == 0.12
    assert options.interruption["false_interruption_timeout"] == 0.9
    # an empty EOT_THRESHOLD is the model's own
    assert load_settings(eot_threshold="").eot_threshold is None
    with pytest.raises(SettingsError, match=r"(?i)eot_threshold"):
        load_settings(eot_threshold="1.5")
    # the framework's end-of-turn model refuses a shorter silence: refused at start-up instead
    with pytest.raises(SettingsError, match=r"VAD_MIN_SILENCE_DURATION of at least 0\.25"):
        load_settings(turn_detector="model", vad_min_silence_duration=0.2)


async def test_the_vad_engine_setting_picks_the_local_vad_or_none() -> None:
    from livekit.agents import inference
    from livekit.plugins import silero

    from agent.config.roster import roster_for
    from agent.config.settings import SettingsError
    from agent.turns.firered import SileroFireRedVAD
    from agent.turns.options import load_vad
    from agent.workers.entry import WorkerPlan, session_models
    from agent.workers.resources import ProcessResources

    assert isinstance(load_vad(load_settings()), SileroFireRedVAD)  # the default
    native = load_vad(load_settings(vad_engine="native"))
    assert isinstance(native, inference.VAD) and not isinstance(native, SileroFireRedVAD)
    assert isinstance(load_vad(load_settings(vad_engine="silero")), silero.VAD)
    with pytest.raises(SettingsError, match="VAD_ENGINE=none needs TURN_DETECTOR=stt"):
        load_settings(vad_engine="none")
    with pytest.raises(SettingsError, match="REALTIME_TURN_DETECTION=local needs a local VAD"):
        load_settings(
            vad_engine="none",
            turn_detector="stt",
            stt_streaming=True,
            realtime_turn_detection="local",
        )
    settings = load_settings(vad_engine="none", turn_detector="stt", stt_streaming=True)
    assert load_vad(settings) is None
    plan = WorkerPlan(settings, roster_for(settings), "learning-orchestrator")
    resources = ProcessResources(tutor_models=pipeline_tutor_models(settings, plan.roster))
    models = session_models(resources, plan)
    assert models["vad"] is None  # said: left out, the framework would load a VAD of its own
    from agent.conversation.session import create_session
    from agent.conversation.state import SessionUserdata

    assert create_session(SessionUserdata(), vad=models["vad"]).vad is None
    assert models["turn_handling"]["turn_detection"] == "stt"
    assert models["stt"].capabilities.streaming is True


def test_admission_follows_the_configured_capacity_not_the_machines_cpu() -> None:
    from types import SimpleNamespace

    from agent.workers.admission import capacity_load

    settings = load_settings(worker_capacity=3, num_idle_processes=5, drain_timeout=120)
    options = server_options(settings, "learning-orchestrator")
    server = AgentServer(**options)
    assert server._load_threshold == 1.0
    assert server._num_idle_processes == 5 and server._drain_timeout == 120
    load = capacity_load(3)
    busy = [
        load(SimpleNamespace(active_jobs=[object()] * n))  # type: ignore[arg-type]
        for n in range(5)
    ]
    assert busy[:3] == [0.0, 1 / 3, 2 / 3]  # still available below capacity
    assert busy[3:] == [1.0, 1.0]  # at capacity: the server sends the job elsewhere
    # defaults: a measured number of sessions per core, a warm pool for a class
    default = server_options(load_settings(), "learning-orchestrator")
    from agent.workers.cpus import usable_cpus

    # a warm process per session the worker admits: a class at the bell finds one each
    assert default["num_idle_processes"] == max(1, int(6 * usable_cpus()))
    # jobs in processes of their own unless the operator chooses threads
    from livekit.agents import JobExecutorType

    assert AgentServer(**default)._job_executor_type == JobExecutorType.PROCESS
    threaded = server_options(load_settings(job_executor="thread"), "learning-orchestrator")
    assert AgentServer(**threaded)._job_executor_type == JobExecutorType.THREAD


THREAD_JOBS_CONNECT = """
import gc, sys, threading
from livekit.rtc._ffi_client import FfiClient
from agent.config.settings import load_settings
from agent.workers.server import PRELOAD_MODULES, worker_server

worker_server(lambda proc: None, load_settings(job_executor=sys.argv[1]), "learning-orchestrator")
print("created" if FfiClient._instance is not None else "none")
print("preloaded" if all(name in sys.modules for name in PRELOAD_MODULES) else "on-demand")
print("frozen" if gc.get_freeze_count() else "collected")
if sys.argv[1] == "thread":
    jobs = 10
    at_once = threading.Barrier(jobs)
    clients = []

    def connect():  # what each job thread's Room.connect reaches first
        at_once.wait()
        clients.append(id(FfiClient.instance))

    threads = [threading.Thread(target=connect) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(len(set(clients)))
"""


def test_jobs_in_threads_share_one_rtc_client_and_the_workers_preloads() -> None:
    """livekit 1.1.21 creates its FFI client on first use without a lock: ten job threads
    connecting at once made ten, and a job listening to a client that lost the race never
    heard its own connect (on the real server the SDK then ended the whole worker). Each
    worker in a fresh interpreter, as it starts."""

    def start(executor: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", THREAD_JOBS_CONNECT, executor],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.split()

    # and what the forkserver imports for job processes, the worker imported for its threads
    # (frozen: the collector's full passes leave the imports alone)
    assert start("thread") == ["created", "preloaded", "frozen", "1"]
    # jobs in processes: the worker's own process starts no runtime (its forks could not use it)
    assert start("process")[0] == "none"


def test_a_class_taking_the_warm_processes_starts_no_new_one_it_cannot_use() -> None:
    from types import SimpleNamespace

    from livekit.agents import utils

    from agent.workers.admission import warm_pool_follows_jobs

    class Pool(utils.EventEmitter[str]):
        """The framework pool's surface the worker steers: its processes and its target."""

        def __init__(self, idle: int) -> None:
            super().__init__()
            self._default_num_idle_processes = idle
            self.processes: list[SimpleNamespace] = []
            self.target = idle

        def set_target_idle_processes(self, n: int) -> None:
            self.target = n

    def take(pool: Pool, jobs: int) -> None:
        proc = SimpleNamespace(running_job=None)
        for _ in range(jobs):
            pool.processes.append(SimpleNamespace(running_job=object()))
            pool.emit("process_job_launched", proc)

    server = AgentServer()
    server._proc_pool = pool = Pool(idle=10)  # type: ignore[assignment]
    warm_pool_follows_jobs(server, sessions=10)
    server.emit("worker_started")
    take(pool, 3)
    assert pool.target == 7  # at once, not on the framework's next load tick
    take(pool, 7)
    assert pool.target == 0  # the whole class seated: nothing left to warm
    pool.processes.pop()
    pool.emit("process_closed", pool.processes[0])
    assert pool.target == 1  # a student left: one process warm again for the next
    # a smaller pool than the capacity is kept full while sessions are free
    server = AgentServer()
    server._proc_pool = small = Pool(idle=4)  # type: ignore[assignment]
    warm_pool_follows_jobs(server, sessions=10)
    server.emit("worker_started")
    take(small, 5)
    assert small.target == 4
    take(small, 3)
    assert small.target == 2


def test_a_worker_whose_cpus_are_spent_sheds_new_students_until_they_are_not() -> None:
    from types import SimpleNamespace

    from agent.telemetry import metrics
    from agent.workers.admission import capacity_load

    share = [0.99]
    load = capacity_load(10, cpu_limit=0.9, cpu_share=lambda: share[0])
    # no session yet: its own start (warm processes loading) turns nobody away
    assert load(SimpleNamespace(active_jobs=[])) == 0.0  # type: ignore[arg-type]
    share[0] = 0.5
    server = SimpleNamespace(active_jobs=[object()] * 2)
    overloads = metrics.WORKER_OVERLOADS._value.get()
    assert load(server) == 0.2  # type: ignore[arg-type]
    share[0] = 0.95  # two sessions, but the core is spent (a heavy class, other work)
    assert load(server) == 1.0  # type: ignore[arg-type]
    assert metrics.WORKER_OVERLOADED._value.get() == 1
    assert load(server) == 1.0  # type: ignore[arg-type]
    assert metrics.WORKER_OVERLOADS._value.get() == overloads + 1  # counted once per episode
    share[0] = 0.6
    assert load(server) == 0.2  # type: ignore[arg-type]
    assert metrics.WORKER_OVERLOADED._value.get() == 0
    # the production load function measures the worker's own processes
    options = server_options(load_settings(worker_capacity=4), "learning-orchestrator")
    assert options["load_fnc"](SimpleNamespace(active_jobs=[])) == 0.0


def test_the_cpu_share_counts_the_job_processes_under_the_worker() -> None:
    from agent.workers.cpus import TreeCpuShare

    spin = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end: pass"
    meter = TreeCpuShare(usable=1.0, interval=0.1, samples=3)
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        meter.share()  # starts sampling
        deadline = time.monotonic() + 10
        while meter.share() < 0.3 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert meter.share() >= 0.3  # a spinning job process is most of a CPU
    finally:
        child.kill()
        child.wait()


async def test_replicas_sharing_a_network_get_their_own_health_port_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`WORKER_HTTP_PORT=0` (compose `--scale`): each replica listens where the system puts
    it, writes the port, and `python -m agent.workers.health` finds and asks it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's port files only
    names = ["replica-a", "replica-b"]
    servers = []
    for name in names:
        server = AgentServer(
            host="127.0.0.1",  # the tests' network guard refuses the all-interfaces lookup
            port=0,
            num_idle_processes=0,
            ws_url="ws://127.0.0.1:9",
            api_key="k",
            api_secret="s",
        )
        server.rtc_session(agent_name=name)(_never_called)
        publish_health_port(server, name)
        servers.append(server)
    started = [asyncio.Event() for _ in servers]
    for server, event in zip(servers, started, strict=True):
        server.on("worker_started", event.set)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("WORKER_HTTP_PORT", None)

    def check(name: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "agent.workers.health", name], env=env, capture_output=True
        ).returncode

    assert await asyncio.to_thread(check, "replica-a") == 1  # not started: unhealthy
    runs = [asyncio.create_task(server.run(unregistered=True)) for server in servers]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), timeout=60)
        ports = [int(port_file(name).read_text()) for name in names]
        assert len(set(ports)) == 2 and 0 not in ports
        assert ports == [server.worker_info.http_port for server in servers]
        assert [await asyncio.to_thread(check, name) for name in names] == [0, 0]
    finally:
        for server in servers:
            await server.aclose()
        await asyncio.gather(*runs, return_exceptions=True)
    assert await asyncio.to_thread(check, "replica-a") == 1  # stopped: unhealthy


async def _never_called(ctx: object) -> None:
    raise AssertionError("no job is dispatched in this test")


def test_the_session_listens_to_the_student_only_and_captions_follow_the_setting() -> None:
    from livekit.agents import NOT_GIVEN

    from agent.workers.job import room_options

    synced = room_options("kid-7", load_settings())
    assert synced.participant_identity == "kid-7"
    assert synced.get_text_output_options().sync_transcription is True  # type: ignore[union-attr]
    # a realtime session: the framework's 24 kHz, in the set frames
    assert synced.get_audio_input_options().sample_rate == 24000  # type: ignore[union-attr]
    assert synced.get_audio_input_options().frame_size_ms == 50  # type: ignore[union-attr]
    assert synced.get_text_input_options() is None  # typed chat is never a student turn
    settings = load_settings(captions_synced=False, audio_input_frame_ms=20)
    ahead = room_options("", settings, input_sample_rate=16000)
    assert ahead.participant_identity is NOT_GIVEN
    assert ahead.get_audio_input_options().sample_rate == 16000  # type: ignore[union-attr]
    assert ahead.get_audio_input_options().frame_size_ms == 20  # type: ignore[union-attr]
    assert ahead.get_text_output_options().sync_transcription is False  # type: ignore[union-attr]


def test_pipeline_workers_hear_the_student_at_the_set_rate_realtime_ones_at_24k() -> None:
    from agent.config.roster import roster_for
    from agent.conversation.state import TutorModels
    from agent.workers.entry import WorkerPlan, job_models
    from agent.workers.resources import ProcessResources

    settings = load_settings()
    roster = roster_for(settings)
    resources = ProcessResources(
        tutor_models={kind: TutorModels() for kind in roster.tutors},
        stt=object(),  # type: ignore[arg-type]
        vad=object(),  # type: ignore[arg-type]
    )
    heard = {
        name: job_models(resources, WorkerPlan(settings, roster, name)).input_sample_rate
        for name in roster.workers
    }
    assert heard == {"learning-orchestrator": 16000, "learning-english": None}


def test_a_worker_in_a_one_cpu_container_admits_one_cores_sessions(tmp_path: Path) -> None:
    """`docker compose` `cpus: 1` on a many-core host: cgroup v2 `cpu.max` says 1 CPU."""
    from agent.workers.admission import capacity
    from agent.workers.cpus import usable_cpus

    root = tmp_path / "cgroup"
    (root / "worker.slice").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")  # the host's root: no limit
    (root / "worker.slice" / "cpu.max").write_text("100000 100000\n")  # one CPU
    proc_cgroup = tmp_path / "self-cgroup"
    proc_cgroup.write_text("0::/worker.slice\n")
    settings = load_settings(worker_sessions_per_core=4)

    assert usable_cpus(root, proc_cgroup) == 1
    assert capacity(settings, usable_cpus(root, proc_cgroup)) == 4
    # a cgroup v1 quota of one and a half CPUs
    v1 = tmp_path / "v1"
    (v1 / "cpu" / "docker" / "abc").mkdir(parents=True)
    (v1 / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    proc_v1 = tmp_path / "self-cgroup-v1"
    proc_v1.write_text("4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n")
    assert usable_cpus(v1, proc_v1) == min(1.5, len(os.sched_getaffinity(0)))
    assert capacity(settings, 1.5) == 6
    # no limit anywhere: the CPUs the process may run on
    assert usable_cpus(tmp_path / "none", tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_a_worker_running_its_jobs_in_threads_admits_one_cores_sessions() -> None:
    """One interpreter runs every job's Python, one thread at a time: four cores give a
    worker with threads no more room than one (more cores: more workers), and its CPU
    guard counts one core as all of it."""
    from agent.workers.admission import capacity, job_cpus

    threads = load_settings(worker_sessions_per_core=6, job_executor="thread")
    processes = load_settings(worker_sessions_per_core=6, job_executor="process")
    assert capacity(threads, 4.0) == 6 and capacity(processes, 4.0) == 24
    assert capacity(threads, 0.5) == capacity(processes, 0.5) == 3  # a quota below a core
    options = server_options(threads, "learning-orchestrator", 4.0)
    assert options["num_idle_processes"] == 6  # a warm thread per session it admits
    assert job_cpus(threads, 4.0) == 1.0 and job_cpus(processes, 4.0) == 4.0  # the CPU guard's


def test_a_worker_pinned_to_one_core_admits_one_cores_sessions() -> None:
    """`taskset -c 0`: the affinity, not the host's core count, sizes the worker."""
    code = (
        "from agent.config.settings import load_settings; "
        "from agent.workers.admission import capacity;"
        "print(capacity(load_settings(worker_sessions_per_core=4)))"
    )
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
