"""`python -m agent check` against the local fakes: the Twirp dispatch server and the
OpenAI-compatible server; one line per problem, with its cause and fix."""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
from pathlib import Path

import pytest

from agent.check import main as check
from harness import REPO
from harness.fakes.openai_server import API_KEY, FakeOpenAI
from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_check(directory: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await asyncio.to_thread(check, out, directory)
    return code, out.getvalue().splitlines()


def line(lines: list[str], what: str) -> str:
    [found] = [entry for entry in lines if what in entry]
    return found


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("docker-compose.yml", "livekit.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("RECORDS_URL", f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tutor.db'}")
    return tmp_path


async def test_everything_reachable_and_accepted_is_all_ok(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TwirpDispatchServer() as livekit, FakeOpenAI() as models:
        monkeypatch.setenv("LIVEKIT_URL", livekit.url)
        monkeypatch.setenv("LIVEKIT_API_SECRET", DEFAULT_SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", models.url)
        code, lines = await run_check(setup)
    assert code == 0, lines
    assert all(entry.startswith("OK") for entry in lines[:-1])
    assert lines[-1] == "checks: 9 ok, 0 failed"
    assert "API key 'devkey' accepted" in line(lines, "LiveKit")
    assert "writable" in line(lines, "records store")


async def test_a_wrong_livekit_secret_and_an_unreachable_model_endpoint_are_one_line_each(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with TwirpDispatchServer() as livekit, FakeOpenAI() as models:
        monkeypatch.setenv("LIVEKIT_URL", livekit.url)
        monkeypatch.setenv("LIVEKIT_API_SECRET", "a-wrong-secret-of-at-least-32-characters")
        monkeypatch.setenv("OPENAI_BASE_URL", models.url)
        monkeypatch.setenv("STT_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
        code, lines = await run_check(setup)
    assert code == 1
    failures = [entry for entry in lines if entry.startswith("FAIL")]
    assert len(failures) == 2, lines
    livekit_line = line(lines, "LiveKit")
    assert livekit_line.startswith("FAIL") and "rejected API key 'devkey' (401)" in livekit_line
    assert "LIVEKIT_API_SECRET" in livekit_line  # the fix
    stt_line = line(lines, "STT endpoint")
    assert stt_line.startswith("FAIL") and "not reachable" in stt_line
    assert "STT_BASE_URL" in stt_line
    assert "a-wrong-secret" not in "\n".join(lines)  # no secret is ever printed


async def test_a_rejected_model_key_names_the_setting_to_fix(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeOpenAI() as models:
        monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{closed_port()}")
        monkeypatch.setenv("OPENAI_BASE_URL", models.url)
        monkeypatch.setenv("TTS_API_KEY", "not-the-key")
        code, lines = await run_check(setup)
    assert code == 1
    tts_line = line(lines, "TTS endpoint")
    assert tts_line.startswith("FAIL") and "key was rejected (401)" in tts_line
    assert "TTS_API_KEY or OPENAI_API_KEY" in tts_line
    assert line(lines, "LLM endpoint").startswith("OK")
    assert "not reachable" in line(lines, "LiveKit")


async def test_a_compose_file_out_of_step_with_the_server_config_fails(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = (setup / "livekit.yaml").read_text().replace("tcp_port: 7881", "tcp_port: 7991")
    (setup / "livekit.yaml").write_text(config)
    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    _code, lines = await run_check(setup)
    layout = line(lines, "compose ports")
    assert layout.startswith("FAIL") and "7991:7991" in layout


async def test_unreadable_settings_exit_2_with_the_settings_line(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIVEKIT_URL", raising=False)
    monkeypatch.setenv("HANDOVER_READY_TIMEOUT", "soon")
    code, lines = await run_check(setup)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("FAIL  settings:") and "HANDOVER_READY_TIMEOUT" in lines[0]
