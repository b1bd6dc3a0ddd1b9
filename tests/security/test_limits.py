"""Limits that protect the service and not against its own people (issue 21, item 4): each
attack replayed against the real app, on both records backends, and refused."""

from __future__ import annotations

import httpx
import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from agent.web.classes import set_class_open
from agent.web.guards import DEVICE_COOKIE, SignInGuard
from harness.databases import RecordsDatabase
from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer
from harness.web import PASSWORD, csrf_from, open_site, sign_in

LARGE = 64 * 1024  # four times the default limit


async def test_a_huge_json_body_is_refused_before_anything_reads_it(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        async with site.client() as client:
            declared = await client.post(
                "/api/token",
                content=b'{"code": "' + b"A" * LARGE + b'"}',
                headers={"Content-Type": "application/json"},
            )
            assert declared.status_code == 413

            async def chunks():  # no Content-Length: counted as it arrives
                for _ in range(LARGE // 1024):
                    yield b" " * 1024

            streamed = await client.post(
                "/api/token", content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert streamed.status_code == 413
            # a form too: the sign-in page reads no more than the limit either
            form = await client.post("/teacher/login", data={"username": "x" * LARGE})
            assert form.status_code == 413
            # and an ordinary join still works
            code = site.school.rivera_class.code
            joined = await client.post("/api/token", json={"code": code, "name": "Maya"})
            assert joined.status_code == 200


async def test_only_wrong_class_codes_count_against_an_address(
    database: RecordsDatabase,
) -> None:
    """Junk, bad names and closed classes cost an address nothing; wrong codes (guesses)
    do, and once spent no code is tried from that address, while another address joins."""
    async for site in open_site(database, web_token_rate_limit="2/minute"):
        code = site.school.rivera_class.code
        async with site.client() as client, site.client() as elsewhere:
            bad = {"content": b"not json", "headers": {"Content-Type": "application/json"}}
            for _ in range(5):
                assert (await client.post("/api/token", **bad)).status_code == 422
                nameless = await client.post("/api/token", json={"code": code, "name": "7"})
                assert nameless.status_code == 400
            joined = await client.post("/api/token", json={"code": code, "name": "Maya"})
            assert joined.status_code == 200  # nothing above was a guess
            for guess in ("AAAAAA", "BBBBBB"):
                wrong = await client.post("/api/token", json={"code": guess, "name": "Maya"})
                assert wrong.status_code == 404
            third = await client.post("/api/token", json={"code": "CCCCCC", "name": "Maya"})
            assert third.status_code == 429
            right = await client.post("/api/token", json={"code": code, "name": "Maya"})
            assert right.status_code == 429  # the guessing address tries no code now
            other = {"X-Forwarded-For": "10.1.2.3"}
            served = await elsewhere.post(
                "/api/token", json={"code": code, "name": "Maya"}, headers=other
            )
            assert served.status_code == 200


async def test_strangers_failing_to_sign_in_as_a_teacher_do_not_lock_the_teacher_out(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database, web_login_rate_limit="3/minute"):
        async with site.client() as stranger:
            # without the form's token: refused, and counted for nothing
            for _ in range(10):
                forged = await stranger.post(
                    "/teacher/login", data={"username": "rivera", "password": "guess"}
                )
                assert forged.status_code == 403
        async with site.client() as rivera:
            assert await sign_in(rivera, "rivera", PASSWORD) == 303


async def test_a_browser_that_signed_in_before_is_not_held_by_other_browsers_failures(
    database: RecordsDatabase,
) -> None:
    """Strangers at the school's address fail as the teacher until that address and name
    are held; the teacher's own browser, which signed in before, still signs in. A device
    cookie is the teacher's own: it does not lift the hold for another name, and its own
    failures hold it."""
    async for site in open_site(database, web_login_rate_limit="3/minute"):
        school = {"X-Forwarded-For": "203.0.113.7"}
        async with site.client(headers=school) as rivera:
            assert await sign_in(rivera, "rivera", PASSWORD) == 303
            assert rivera.cookies.get(DEVICE_COOKIE)
            await rivera.post(
                "/teacher/logout", data={"csrf": csrf_from((await rivera.get("/teacher")).text)}
            )
        async with site.client(headers=school) as stranger:
            for name in ("rivera", "okafor"):
                for _ in range(4):
                    await sign_in(stranger, name, "guess")
            assert await sign_in(stranger, "rivera", PASSWORD) == 429  # held, as before
        async with site.client(headers=school, cookies=rivera.cookies) as again:
            assert await sign_in(again, "rivera", PASSWORD) == 303
            # the same cookie does nothing for another account's name
            assert await sign_in(again, "okafor", PASSWORD) == 429
        async with site.client(headers=school, cookies=rivera.cookies) as guesser:
            for _ in range(3):  # someone at that browser guessing: the browser is held
                assert await sign_in(guesser, "rivera", "guess") == 401
            assert await sign_in(guesser, "rivera", PASSWORD) == 429


def test_failures_from_one_address_do_not_hold_the_same_teacher_at_another() -> None:
    guard = SignInGuard(
        MovingWindowRateLimiter(MemoryStorage()),
        per_name_and_address=parse("3/minute"),
        per_address=parse("12/minute"),
    )
    for _ in range(3):
        assert guard.allowed("bob", "203.0.113.9")
        guard.failed("bob", "203.0.113.9")
    assert not guard.allowed("Bob ", "203.0.113.9")  # the guesser waits
    assert guard.allowed("bob", "198.51.100.4")  # bob at school does not
    assert guard.allowed("alice", "203.0.113.9")
    for name in ("a", "b", "c", "d"):  # many names from one address: the address waits
        for _ in range(3):
            guard.failed(name, "192.0.2.1")
    assert not guard.allowed("e", "192.0.2.1")


async def test_a_closed_class_gets_no_tutor_and_the_tutor_check_is_limited(
    database: RecordsDatabase,
) -> None:
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for site in open_site(
            database,
            livekit_url=livekit.url,
            livekit_api_secret=DEFAULT_SECRET,
            web_tutor_arrival_timeout=0.001,
            web_tutor_rate_limit="3/minute",
        ):
            school = site.school
            async with httpx.AsyncClient(base_url=site.url) as client:
                code = school.rivera_class.code
                joined = (
                    await client.post("/api/token", json={"code": code, "name": "Maya"})
                ).json()
                auth = {"Authorization": f"Bearer {joined['token']}"}
                assert (await client.post("/api/tutor", headers=auth, json={})).status_code == 200
                await set_class_open(site.store, school.rivera.id, code, is_open=False)
                closed = await client.post("/api/tutor", headers=auth, json={})
                assert closed.status_code == 403 and closed.json()["reason"] == "closed"
                assert (await client.post("/api/tutor", headers=auth, json={})).status_code == 403
                assert (await client.post("/api/tutor", headers=auth, json={})).status_code == 429
            # one re-dispatch, made while the class was open; none after it closed
            assert len(livekit.history(joined["room"])) == 1


async def test_a_cross_site_form_or_text_post_is_neither_read_nor_counted(
    database: RecordsDatabase,
) -> None:
    """A page on another site can make a browser post a form or text without asking first;
    the student endpoints take JSON only, so such posts cannot spend a class's join budget."""
    async for site in open_site(database, web_token_rate_limit="2/minute"):
        async with site.client() as client:
            code = site.school.rivera_class.code
            simple = [
                {"data": {"code": code, "name": "Maya"}},  # a form
                {
                    "content": f'{{"code": "{code}", "name": "Maya"}}',
                    "headers": {"Content-Type": "text/plain"},
                },  # text
                {"content": b"junk"},  # no type at all
            ]
            for request in simple * 3:
                assert (await client.post("/api/token", **request)).status_code == 415
            joined = await client.post("/api/token", json={"code": code, "name": "Maya"})
            assert joined.status_code == 200  # the budget is whole
            token = joined.json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            text = await client.post("/api/tutor", headers=auth, content=b'{"lost": []}')
            assert text.status_code == 415


async def test_a_students_token_is_for_joining_soon_and_speaking_only(
    database: RecordsDatabase,
) -> None:
    """A token copied out of a child's page: it expires within 15 minutes (LiveKit's own
    reconnections keep a joined session), and it can publish a microphone and nothing else
    (no camera, no screen into a child's room)."""
    import jwt

    async for site in open_site(database):
        async with site.client() as client:
            payload = {"code": site.school.rivera_class.code, "name": "Maya"}
            token = (await client.post("/api/token", json=payload)).json()["token"]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["exp"] - claims["nbf"] <= 15 * 60
            assert claims["video"]["canPublishSources"] == ["microphone"]
            assert claims["video"]["room"] and not claims["video"].get("roomAdmin")


@pytest.mark.parametrize(
    "name",
    [
        "\u041caya",  # a Cyrillic EM: it reads as "Maya", another child's name
        "Ma\u3164ya",  # a letter that shows as nothing
        "\u3164",  # a name that looks empty
        "Ma\u200bya",  # a zero-width space
    ],
)
async def test_a_name_that_looks_like_another_or_like_nothing_is_refused(
    database: RecordsDatabase, name: str
) -> None:
    async for site in open_site(database):
        async with site.client() as client:
            payload = {"code": site.school.rivera_class.code, "name": name}
            answer = await client.post("/api/token", json=payload)
            assert answer.status_code == 400 and answer.json()["reason"] == "name_invalid"


async def test_names_in_any_one_alphabet_are_welcome(database: RecordsDatabase) -> None:
    async for site in open_site(database):
        async with site.client() as client:
            for name in ("Zoe\u0308", "Анна", "José", "さくら子", "O'Brien"):
                payload = {"code": site.school.rivera_class.code, "name": name}
                answer = await client.post("/api/token", json=payload)
                assert answer.status_code == 200, (name, answer.text)


async def test_a_class_of_35_behind_one_address_all_join_and_ask_for_tutors(
    database: RecordsDatabase,
) -> None:
    """A school's whole class shares one address (its router); each child joins and its
    page asks twice for a tutor within the minute, while another client at the same address
    posts junk: every child's request is served."""
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for site in open_site(
            database, livekit_url=livekit.url, livekit_api_secret=DEFAULT_SECRET
        ):
            code = site.school.rivera_class.code
            async with site.client() as school, site.client() as junk:
                tokens = []
                junk_json = {"content": b"{junk", "headers": {"Content-Type": "application/json"}}
                for child in range(35):
                    await junk.post("/api/token", content=b"junk")  # text: neither read nor counted
                    for _ in range(3):  # malformed: read, refused, not counted
                        assert (await junk.post("/api/token", **junk_json)).status_code == 422
                    joined = await school.post(
                        "/api/token", json={"code": code, "name": f"Child {chr(65 + child % 26)}"}
                    )
                    assert joined.status_code == 200, joined.text
                    tokens.append(joined.json()["token"])
                for _ in range(2):
                    for token in tokens:
                        auth = {"Authorization": f"Bearer {token}"}
                        asked = await school.post("/api/tutor", headers=auth, json={})
                        assert asked.status_code == 200, asked.text
