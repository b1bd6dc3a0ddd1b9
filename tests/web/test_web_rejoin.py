"""A reloaded page comes back to its visit (issue 22, item 2): the resume key a join gives
gets a token for the same room, identity and session, whose dispatch brings the tutor back
to resume it, and the teacher sees one visit; a key that is forged, altered, from another
service, too old, or for a closed class or an erased visit gets nothing (both backends)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from livekit import api

from agent.dispatch.metadata import parse_dispatch_metadata
from agent.records.erasure import Scope, erase
from agent.web.classes import set_class_open
from agent.web.rejoin import SALT
from harness.databases import RecordsDatabase
from harness.web import Site, open_site, sign_in


@pytest.fixture
async def site(database: RecordsDatabase) -> AsyncIterator[Site]:
    async for opened in open_site(database):
        yield opened


def session_in(site: Site, joined: dict) -> str:
    [dispatch] = claims_of(site, joined["token"]).room_config.agents  # type: ignore[union-attr]
    return parse_dispatch_metadata(dispatch.metadata)["session"]


def claims_of(site: Site, token: str) -> api.Claims:
    secret = site.settings.livekit_api_secret.get_secret_value()
    return api.TokenVerifier(site.settings.livekit_api_key, secret).verify(token)


async def join(client: httpx.AsyncClient, site: Site) -> dict:
    answer = await client.post(
        "/api/token", json={"code": site.school.rivera_class.code, "name": "Zoë"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_resume_key_brings_the_page_back_to_the_same_visit_and_session(
    site: Site,
) -> None:
    async with site.client() as client:
        first = await join(client, site)
        again = await client.post("/api/token", json={"resume": first["resume"]})
    assert again.status_code == 200, again.text
    back = again.json()
    assert (back["room"], back["identity"]) == (first["room"], first["identity"])
    [before] = claims_of(site, first["token"]).room_config.agents  # type: ignore[union-attr]
    [after] = claims_of(site, back["token"]).room_config.agents  # type: ignore[union-attr]
    assert parse_dispatch_metadata(after.metadata) == parse_dispatch_metadata(before.metadata)
    assert claims_of(site, back["token"]).name == "Zoë"
    assert back["resume"]  # a fresh key: the window runs from the last join

    async with site.client() as teacher:
        assert await sign_in(teacher, "rivera") == 303
        sessions = (await teacher.get("/api/teacher/sessions")).json()
    assert [s["student"] for s in sessions].count("Zoë") == 1  # one visit, not two


async def test_a_forged_altered_or_foreign_key_gets_nothing(site: Site) -> None:
    async with site.client() as client:
        first = await join(client, site)
        session = session_in(site, first)
        other = URLSafeTimedSerializer("another service's secret", salt=SALT)
        keys = [
            "not-a-key",
            first["resume"][:-2] + ("AA" if not first["resume"].endswith("AA") else "BB"),
            other.dumps({"session": session, "g": 0}),
            # a teacher's cookie is signed with the same secret, not with this salt
            URLSafeTimedSerializer(site.settings.web_session_secret.get_secret_value()).dumps(  # type: ignore[union-attr]
                {"session": site.school.session_id}
            ),
        ]
        for key in keys:
            answer = await client.post("/api/token", json={"resume": key})
            assert answer.status_code == 410, key
            assert "start again" in answer.json()["error"]
            assert "token" not in answer.json()


async def test_a_key_older_than_the_window_or_for_a_closed_class_gets_nothing(
    site: Site,
) -> None:
    class HourAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3600

    async with site.client() as client:
        first = await join(client, site)
        session = session_in(site, first)
        secret = site.settings.web_session_secret.get_secret_value()  # type: ignore[union-attr]
        old = URLSafeTimedSerializer(secret, salt=SALT, signer=HourAgo).dumps(
            {"session": session, "g": 0}  # the visit's valid key, but signed an hour ago
        )
        late = await client.post("/api/token", json={"resume": old})
        assert late.status_code == 410  # WEB_RESUME_MINUTES is 30
        await set_class_open(
            site.store, site.school.rivera.id, site.school.rivera_class.code, is_open=False
        )
        closed = await client.post("/api/token", json={"resume": first["resume"]})
    assert closed.status_code == 403 and "closed" in closed.json()["error"]


async def test_an_erased_visit_cannot_be_rejoined(site: Site) -> None:
    async with site.client() as client:
        first = await join(client, site)
        session = session_in(site, first)
        await erase(site.store, Scope(session_id=session), actor="test")
        answer = await client.post("/api/token", json={"resume": first["resume"]})
    assert answer.status_code == 410


def test_resume_keys_expire_after_the_window() -> None:
    from agent.web.classes import JoinError
    from agent.web.rejoin import ResumeKey, key_of, resume_key

    key = resume_key("secret", "s-1", 3)
    assert key_of("secret", key, timedelta(minutes=30)) == ResumeKey("s-1", 3)
    with pytest.raises(JoinError):
        key_of("secret", key, timedelta(seconds=-1))
