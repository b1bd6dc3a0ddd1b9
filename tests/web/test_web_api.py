"""The web service over HTTP: student tokens for open class codes only, and teacher data
only for the signed-in teacher it belongs to (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from livekit import api

from agent.dispatch.metadata import parse_dispatch_metadata
from agent.web.accounts import remove_teacher
from agent.web.app import create_app
from agent.web.classes import set_class_open
from agent.web.teacher_data import views_of
from harness.databases import RecordsDatabase
from harness.web import Site, csrf_from, open_site, sign_in, web_settings


@pytest.fixture
async def site(database: RecordsDatabase) -> AsyncIterator[Site]:
    async for opened in open_site(database, livekit_public_url="wss://tutor.school.example"):
        yield opened


async def test_an_open_class_code_gets_a_token_for_one_new_room_with_the_orchestrator(
    site: Site,
) -> None:
    code = site.school.rivera_class.code
    async with site.client() as client:
        first = await client.post("/api/token", json={"code": f" {code.lower()} ", "name": "Zoë"})
        second = await client.post("/api/token", json={"code": code, "name": "Zoë"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["url"] == "wss://tutor.school.example"
    assert body["room"].startswith(f"{code.lower()}-")
    assert body["identity"].startswith("zoe-")
    assert second.json()["room"] != body["room"]  # one room per visit
    assert second.json()["identity"] != body["identity"]

    claims = api.TokenVerifier(
        site.settings.livekit_api_key, site.settings.livekit_api_secret.get_secret_value()
    ).verify(body["token"])
    assert claims.identity == body["identity"] and claims.name == "Zoë"
    grants = claims.video
    assert grants is not None and grants.room == body["room"] and grants.room_join
    assert not (grants.room_admin or grants.room_create or grants.room_list or grants.room_record)
    agents = claims.room_config.agents  # type: ignore[union-attr]
    assert [a.agent_name for a in agents] == [site.settings.orchestrator_agent_name]
    metadata = parse_dispatch_metadata(agents[0].metadata)
    assert metadata["student"] == body["identity"]
    # the session the workers will record is the one the visit ties to the class
    async with site.client() as teacher:
        assert await sign_in(teacher, "rivera") == 303
        sessions = (await teacher.get("/api/teacher/sessions")).json()
    assert metadata["session"] in {s["id"] for s in sessions}
    assert {"Zoë", "Maya"} <= {s["student"] for s in sessions}
    # secrets never travel in the token
    assert site.settings.livekit_api_secret.get_secret_value() not in body["token"]


async def test_the_token_expires(site: Site) -> None:
    async with site.client() as client:
        body = (
            await client.post(
                "/api/token", json={"code": site.school.rivera_class.code, "name": "Ali"}
            )
        ).json()
    import jwt

    claims = jwt.decode(body["token"], options={"verify_signature": False})
    lifetime = timedelta(seconds=claims["exp"] - claims["nbf"])
    assert timedelta(minutes=1) <= lifetime <= timedelta(hours=2)


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        ({"code": "ZZZZZZ", "name": "Maya"}, 404, "code_unknown"),
        ({"code": "", "name": "Maya"}, 400, "code_missing"),
        ({"code": "CLASS", "name": ""}, 400, "name_missing"),
        ({"code": "CLASS", "name": "Robert'); DROP TABLE"}, 400, "name_invalid"),
    ],
)
async def test_a_wrong_code_or_name_is_refused_with_a_message_for_the_child(
    site: Site, payload: dict[str, str], status: int, reason: str
) -> None:
    payload = {k: v.replace("CLASS", site.school.rivera_class.code) for k, v in payload.items()}
    async with site.client() as client:
        response = await client.post("/api/token", json=payload)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert "token" not in response.json() and response.json()["error"].endswith(".")


async def test_a_closed_class_gets_no_token(site: Site) -> None:
    school = site.school
    assert await set_class_open(
        site.store, school.rivera.id, school.rivera_class.code, is_open=False
    )
    async with site.client() as client:
        response = await client.post(
            "/api/token", json={"code": school.rivera_class.code, "name": "Maya"}
        )
    assert response.status_code == 403 and response.json()["reason"] == "class_closed"
    # another teacher cannot reopen it
    assert not await set_class_open(
        site.store, school.okafor.id, school.rivera_class.code, is_open=True
    )


async def test_guessing_class_codes_is_rate_limited_per_client(database: RecordsDatabase) -> None:
    async for site in open_site(database, web_token_rate_limit="3/minute"):
        payload = {"code": site.school.rivera_class.code, "name": "Maya"}
        async with site.client() as client:
            joins = [(await client.post("/api/token", json=payload)).status_code for _ in range(5)]
            guess = {"code": "ZZZZZZ", "name": "Maya"}
            guesses = [(await client.post("/api/token", json=guess)).status_code for _ in range(4)]
            limited = await client.post("/api/token", json=guess)
        assert joins == [200] * 5  # a class joining from one address is not counted
        assert guesses == [404, 404, 404, 429]
        assert limited.status_code == 429 and "Retry-After" in limited.headers


def teacher_routes() -> list[tuple[str, str]]:
    """Every teacher page and API route of the app (new routes are covered automatically)."""
    app = create_app(web_settings("sqlite+aiosqlite:////tmp/unused-voice-tutor.db"))
    found = []
    # every route the app serves, from its routers too (its schema is built, not served)
    for route_path, operations in app.openapi()["paths"].items():
        if not route_path.startswith(("/teacher", "/api/teacher")):
            continue
        if route_path == "/teacher/login":
            continue  # the way in
        path = route_path.replace("{session_id}", "SESSION").replace("{code}", "CODE")
        path = path.replace("{action}", "close")
        found += [(method.upper(), path) for method in sorted(operations)]
    return found


async def test_every_teacher_route_refuses_no_cookie_and_a_student_token(site: Site) -> None:
    routes = teacher_routes()
    assert ("GET", "/teacher") in routes and ("GET", "/api/teacher/sessions") in routes
    async with site.client() as client:
        student = (
            await client.post(
                "/api/token", json={"code": site.school.rivera_class.code, "name": "Maya"}
            )
        ).json()["token"]
    for credentials in ({}, {"Authorization": f"Bearer {student}"}):
        async with site.client(headers=credentials, cookies={"tutor_teacher": student}) as client:
            for method, path in routes:
                path = path.replace("SESSION", site.school.session_id).replace(
                    "CODE", site.school.rivera_class.code
                )
                response = await client.request(method, path, data={"csrf": "x", "name": "n"})
                assert response.status_code in (401, 403), (method, path, response.status_code)
                assert site.school.student not in response.text
                assert site.school.rivera_class.code not in response.text
    # nothing changed: the class is still open
    async with site.client() as client:
        ok = await client.post(
            "/api/token", json={"code": site.school.rivera_class.code, "name": "Maya"}
        )
    assert ok.status_code == 200


async def test_a_teacher_sees_only_their_own_classes_sessions(site: Site) -> None:
    school = site.school
    async with site.client() as rivera, site.client() as okafor:
        assert await sign_in(rivera, "rivera") == 303
        assert await sign_in(okafor, "okafor") == 303
        mine = (await rivera.get("/api/teacher/sessions")).json()
        theirs = (await okafor.get("/api/teacher/sessions")).json()
        assert [s["id"] for s in mine] == [school.session_id]
        assert mine[0]["subjects"] == ["Mathematics tutor"] and mine[0]["flags"] == 1
        assert mine[0]["length_s"] == 95
        assert theirs == []
        assert (await okafor.get(f"/api/teacher/sessions/{school.session_id}")).status_code == 404
        page = await okafor.get(f"/teacher/sessions/{school.session_id}")
        assert page.status_code == 404 and school.flagged_words not in page.text
        assert (await okafor.get("/api/teacher/flags")).json() == []
        assert (await okafor.get("/api/teacher/alerts")).json() == []
        home = await okafor.get("/teacher")
        assert home.status_code == 200 and school.student not in home.text
        assert school.rivera_class.code not in home.text
        assert school.okafor_class.code in home.text
        flags = (await rivera.get("/api/teacher/flags")).json()
        assert [(f["tier"], f["alerts"][0]["status"]) for f in flags] == [("urgent", "pending")]
    # nobody opened a transcript they may not see
    assert await views_of(site.store, school.session_id) == []


async def test_the_safeguarding_lead_sees_every_urgent_flag_of_the_school(site: Site) -> None:
    async with site.client() as lead:
        assert await sign_in(lead, "lead") == 303
        flags = (await lead.get("/api/teacher/flags")).json()
        assert [(f["session_id"], f["tier"]) for f in flags] == [(site.school.session_id, "urgent")]
        found = await lead.get(f"/api/teacher/sessions/{site.school.session_id}")
        assert found.status_code == 200


async def test_a_transcript_names_speaker_and_tutor_per_turn_and_its_view_is_recorded(
    site: Site,
) -> None:
    school = site.school
    async with site.client() as rivera:
        assert await sign_in(rivera, "rivera") == 303
        found = (await rivera.get(f"/api/teacher/sessions/{school.session_id}")).json()
        page = await rivera.get(f"/teacher/sessions/{school.session_id}")
    assert [(t["speaker"], t["tutor"]) for t in found["turns"]] == [
        ("orchestrator", "Main tutor"),
        ("student", "Main tutor"),
        ("math", "Mathematics tutor"),
    ]
    assert found["student"] == "Maya" and found["class"]["code"] == school.rivera_class.code
    assert page.status_code == 200 and school.flagged_words in page.text
    assert "Seven times eight is fifty-six." in page.text
    views = await views_of(site.store, school.session_id)
    assert [who for who, _ in views] == ["rivera", "rivera"]


async def test_sign_in_needs_the_form_token_the_right_password_and_is_rate_limited(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database, web_login_rate_limit="2/minute"):
        async with site.client() as client:
            page = await client.get("/teacher")
            assert page.status_code == 401 and 'name="password"' in page.text
            forged = await client.post(
                "/teacher/login", data={"username": "rivera", "password": "correct horse battery"}
            )
            assert forged.status_code == 403  # and counts for nothing
            assert (await client.get("/api/teacher/me")).status_code == 401
            for _ in range(3):  # signing in works and is never what locks anyone out
                assert await sign_in(client, "rivera") == 303
            assert (await client.get("/api/teacher/me")).json()["username"] == "rivera"
        async with site.client() as other:
            assert await sign_in(other, "rivera", "wrong password!") == 401
            assert await sign_in(other, "rivera", "wrong password?") == 401
            # two failures for rivera from this address this minute: wait, right password too
            assert await sign_in(other, "rivera") == 429
            assert await sign_in(other, "okafor") == 303  # another teacher here is not held


async def test_signing_out_and_removing_an_account_end_the_sign_in(site: Site) -> None:
    async with site.client() as rivera, site.client() as okafor:
        assert await sign_in(rivera, "rivera") == 303
        assert await sign_in(okafor, "okafor") == 303
        csrf = csrf_from((await rivera.get("/teacher")).text)
        assert (await rivera.post("/teacher/logout", data={"csrf": csrf})).status_code == 303
        assert (await rivera.get("/api/teacher/me")).status_code == 401
        await remove_teacher(site.store, "okafor", hand_to="rivera")
        assert (await okafor.get("/api/teacher/me")).status_code == 401


async def test_a_teacher_creates_and_closes_a_class_with_the_form_token_only(site: Site) -> None:
    async with site.client() as rivera:
        assert await sign_in(rivera, "rivera") == 303
        csrf = csrf_from((await rivera.get("/teacher")).text)
        refused = await rivera.post("/teacher/classes", data={"name": "Forged", "csrf": "nope"})
        assert refused.status_code == 403
        made = await rivera.post("/teacher/classes", data={"name": "Year 3 Ash", "csrf": csrf})
        assert made.status_code == 303
        classes = (await rivera.get("/api/teacher/classes")).json()
        assert [c["name"] for c in classes if c["open"]] == ["Year 3 Ash", "Year 4 Maple"]
        code = next(c["code"] for c in classes if c["name"] == "Year 3 Ash")
        closed = await rivera.post(f"/teacher/classes/{code}/close", data={"csrf": csrf})
        assert closed.status_code == 303
        other = site.school.okafor_class.code
        assert (
            await rivera.post(f"/teacher/classes/{other}/close", data={"csrf": csrf})
        ).status_code == 404
    async with site.client() as student:
        response = await student.post("/api/token", json={"code": code, "name": "Maya"})
        assert response.json()["reason"] == "class_closed"
        still_open = await student.post("/api/token", json={"code": other, "name": "Maya"})
        assert still_open.status_code == 200
