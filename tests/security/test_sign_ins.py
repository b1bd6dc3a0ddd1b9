"""A sign-in that can end (issue 21, item 1): a teacher's cookie, saved by whoever had it,
stops working once the account is removed (and never becomes the next account's), once
the teacher signs out, and once the password changes; on both records backends."""

from __future__ import annotations

import json
from base64 import b64encode

import httpx
from itsdangerous import TimestampSigner

from agent.web.accounts import add_teacher, remove_teacher, set_password
from agent.web.app import SESSION_COOKIE
from harness.databases import RecordsDatabase
from harness.web import PASSWORD, SESSION_SECRET, Site, csrf_from, open_site, sign_in

NEW_PASSWORD = "a different horse battery"


def saved_cookie(client: httpx.AsyncClient) -> dict[str, str]:
    return {SESSION_COOKIE: client.cookies[SESSION_COOKIE]}


async def me_with(site: Site, cookies: dict[str, str]) -> httpx.Response:
    """`/api/teacher/me` from a fresh client holding only the saved cookie."""
    async with site.client(cookies=cookies) as replay:
        return await replay.get("/api/teacher/me")


async def test_a_removed_teachers_cookie_does_not_become_the_next_accounts(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        carol = await add_teacher(site.store, "carol", PASSWORD)
        async with site.client() as client:
            assert await sign_in(client, "carol") == 303
            cookie = saved_cookie(client)
        assert (await me_with(site, cookie)).json()["username"] == "carol"

        await remove_teacher(site.store, "carol")
        dave = await add_teacher(site.store, "dave", PASSWORD, role="safeguarding")
        assert dave.id != carol.id  # ids are never handed out twice

        assert (await me_with(site, cookie)).status_code == 401
        async with site.client() as client:  # dave's own sign-in works
            assert await sign_in(client, "dave") == 303
            assert (await client.get("/api/teacher/me")).json()["role"] == "safeguarding"


async def test_signing_out_ends_the_sign_in_everywhere_its_cookie_was_kept(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        async with site.client() as laptop, site.client() as tablet:
            assert await sign_in(laptop, "rivera") == 303
            assert await sign_in(tablet, "rivera") == 303
            copied = saved_cookie(laptop)
            page = await laptop.get("/teacher")
            out = await laptop.post("/teacher/logout", data={"csrf": csrf_from(page.text)})
            assert out.status_code == 303

            assert (await me_with(site, copied)).status_code == 401
            assert (await tablet.get("/api/teacher/me")).status_code == 401
            assert await sign_in(laptop, "rivera") == 303  # and a new sign-in works
            assert (await laptop.get("/api/teacher/me")).status_code == 200


async def test_a_new_password_ends_the_sign_ins_made_with_the_old_one(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        async with site.client() as client:
            assert await sign_in(client, "okafor") == 303
            cookie = saved_cookie(client)
        await set_password(site.store, "okafor", NEW_PASSWORD)

        assert (await me_with(site, cookie)).status_code == 401
        async with site.client() as client:
            assert await sign_in(client, "okafor", PASSWORD) == 401
            assert await sign_in(client, "okafor", NEW_PASSWORD) == 303
            assert (await client.get("/api/teacher/me")).status_code == 200


async def test_a_cookie_naming_only_an_account_is_not_a_sign_in(
    database: RecordsDatabase,
) -> None:
    """The cookies signed before sign-ins had versions (a teacher id alone) are refused,
    even correctly signed with the service's secret."""
    async for site in open_site(database):
        payload = b64encode(json.dumps({"teacher_id": site.school.lead.id}).encode())
        cookie = TimestampSigner(SESSION_SECRET).sign(payload).decode()
        assert (await me_with(site, {SESSION_COOKIE: cookie})).status_code == 401
