"""Settings: a missing or bad value fails with one line that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.settings import SettingsError, load_settings
from harness import REPO

REQUIRED = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "OPENAI_API_KEY")


@pytest.fixture
def no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env here
    return tmp_path


def test_missing_openai_key_names_the_variable(
    no_env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "OPENAI_API_KEY" in message
    assert "\n" not in message
    assert "LIVEKIT_URL" not in message


def test_invalid_value_names_the_variable(
    no_env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOVER_READY_TIMEOUT", "soon")
    with pytest.raises(SettingsError, match="HANDOVER_READY_TIMEOUT"):
        load_settings()


def test_settings_are_read_from_dot_env(no_env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    (no_env_file / ".env").write_text("OPENAI_API_KEY=from-dot-env\nMATH_VOICE=verse\n")
    settings = load_settings()
    assert settings.openai_api_key.get_secret_value() == "from-dot-env"
    assert settings.math_voice == "verse"
    assert "from-dot-env" not in repr(settings)


def test_worker_without_keys_exits_with_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", "import agent.workers.orchestrator"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(name in lines[0] for name in REQUIRED)
    assert "Traceback" not in proc.stderr


def test_an_unusable_records_url_stops_the_worker_with_one_line(
    no_env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDS_URL", "mysql://tutor@db/records")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "RECORDS_URL" in str(error.value) and "\n" not in str(error.value)


def test_empty_observability_settings_mean_off(
    no_env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECORDS_URL", raising=False)
    (no_env_file / ".env").write_text("PROMETHEUS_PORT=\nOTLP_TRACES_ENDPOINT=\nRECORDS_URL=\n")
    settings = load_settings()
    assert settings.prometheus_port is None and settings.otlp_traces_endpoint == ""
    assert settings.records_url == ""  # records off
