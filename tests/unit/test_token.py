"""Student tokens: one room, no admin, an expiry, and a dispatch of the orchestrator."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from livekit import api

from agent.__main__ import main
from agent.config.settings import LiveKitSettings, load_settings
from agent.dispatch.metadata import parse_dispatch_metadata
from agent.dispatch.token import TokenRequestError, student_token


@pytest.fixture
def settings() -> LiveKitSettings:
    return load_settings(LiveKitSettings)


def verify(settings: LiveKitSettings, token: str) -> api.Claims:
    secret = settings.livekit_api_secret.get_secret_value()
    return api.TokenVerifier(settings.livekit_api_key, secret).verify(token)


def test_token_grants_exactly_joining_one_room(settings: LiveKitSettings) -> None:
    claims = verify(settings, student_token(settings, room="class-4b", identity="kid-7"))

    assert claims.identity == "kid-7"
    video = claims.video
    assert video is not None
    assert (video.room_join, video.room) == (True, "class-4b")
    assert video.can_publish and video.can_subscribe and video.can_publish_data
    assert not video.room_admin and not video.room_create and not video.room_list
    assert not video.room_record and not video.ingress_admin


def expiry(token: str) -> float:
    return jwt.decode(token, options={"verify_signature": False})["exp"]


def test_token_expires_after_two_hours_by_default(settings: LiveKitSettings) -> None:
    token = student_token(settings, room="r", identity="kid")
    assert verify(settings, token).identity == "kid"
    assert abs(expiry(token) - (time.time() + 2 * 3600)) < 60


def test_token_ttl_is_configurable_within_bounds(settings: LiveKitSettings) -> None:
    token = student_token(settings, room="r", identity="kid", ttl=timedelta(minutes=30))
    assert abs(expiry(token) - (time.time() + 1800)) < 60
    with pytest.raises(TokenRequestError):
        student_token(settings, room="r", identity="kid", ttl=timedelta(days=3))


def test_token_dispatches_the_orchestrator_with_session_and_student(
    settings: LiveKitSettings,
) -> None:
    claims = verify(settings, student_token(settings, room="r", identity="kid-7"))

    [dispatch] = claims.room_config.agents
    assert dispatch.agent_name == "learning-orchestrator"
    # a room made again by a join the student abandoned (a lost node) does not linger
    assert claims.room_config.empty_timeout == 20
    fields = parse_dispatch_metadata(dispatch.metadata)
    assert set(fields) == {"session", "student"}
    assert fields["student"] == "kid-7" and fields["session"]
    other = verify(settings, student_token(settings, room="r", identity="kid-7"))
    assert (
        parse_dispatch_metadata(other.room_config.agents[0].metadata)["session"]
        != (fields["session"])
    )


def test_token_carries_no_secret(settings: LiveKitSettings) -> None:
    token = student_token(settings, room="r", identity="kid")
    assert settings.livekit_api_secret.get_secret_value() not in str(
        jwt.decode(token, options={"verify_signature": False})
    )


def test_cli_prints_a_verifiable_token_and_playground_steps(
    settings: LiveKitSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--room", "class-4b", "--identity", "kid-7"]) == 0
    out, err = capsys.readouterr()
    assert verify(settings, out.strip()).video.room == "class-4b"
    assert "Agents Playground" in err and settings.livekit_url in err


def test_cli_token_for_a_session_dispatches_the_orchestrator_to_continue_it(
    settings: LiveKitSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--room", "class-4b", "--identity", "kid-7", "--session", "a1b2c3d4e5f6"]
    assert main(argv) == 0
    [dispatch] = verify(settings, capsys.readouterr().out.strip()).room_config.agents
    assert dispatch.metadata == "session:a1b2c3d4e5f6|student:kid-7"
    assert main([*argv[:-1], "s 1"]) == 2
    assert "session 's 1' may only use" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("room", "identity", "complaint"),
    [
        ("", "kid", "room must not be empty"),
        ("r", "", "identity must not be empty"),
        ("r" * 65, "kid", "room is too long"),
        ("class/4b", "kid", "room 'class/4b' may only use"),
        ("r", "kid 7", "identity 'kid 7' may only use"),
        ("r", "-kid", "must start with a letter or digit"),
        ("r", "kïd", "may only use"),
    ],
)
def test_cli_rejects_bad_input_with_one_line_and_exit_2(
    room: str, identity: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", f"--room={room}", f"--identity={identity}"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and complaint in err


def test_cli_without_livekit_credentials_names_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIVEKIT_API_SECRET")
    monkeypatch.delenv("OPENAI_API_KEY")  # the token command does not need it
    assert main(["token", "--room", "r", "--identity", "kid"]) == 2
    err = capsys.readouterr().err
    assert "LIVEKIT_API_SECRET" in err and "OPENAI_API_KEY" not in err
    assert err.count("\n") == 1
