"""A resume key is a credential for one child's visit: it opens the visit once, never after
the child pressed Leave, and never long after the visit began, however often it was renewed.
Replayed as an attacker would (a copy taken from the page), on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from agent.records.schema import VisitRow
from agent.records.store import utc_now
from agent.web.rejoin import VISIT_LIFETIME, key_of
from harness.databases import RecordsDatabase
from harness.web import Site, open_site


@pytest.fixture
async def site(database: RecordsDatabase) -> AsyncIterator[Site]:
    async for site in open_site(database):
        yield site


async def join(client: httpx.AsyncClient, site: Site) -> dict:
    payload = {"code": site.school.rivera_class.code, "name": "Maya"}
    answer = await client.post("/api/token", json=payload)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def rejoin(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/api/token", json={"resume": key})


async def test_a_copied_key_opens_nothing_once_the_page_used_it(site: Site) -> None:
    async with site.client() as page, site.client() as attacker:
        first = await join(page, site)
        reloaded = await rejoin(page, first["resume"])  # the child's own reload
        assert reloaded.status_code == 200
        replayed = await rejoin(attacker, first["resume"])  # the copy, from elsewhere
        assert replayed.status_code == 410 and "token" not in replayed.json()
        # the key the reload got is good once: for the page, not for a second copy
        second = reloaded.json()["resume"]
        assert (await rejoin(page, second)).status_code == 200
        assert (await rejoin(attacker, second)).status_code == 410


async def test_after_leave_no_key_of_the_visit_opens_it(site: Site) -> None:
    async with site.client() as page, site.client() as attacker:
        first = await join(page, site)
        left = await page.post("/api/leave", json={"resume": first["resume"]})
        assert left.status_code == 204
        assert (await rejoin(attacker, first["resume"])).status_code == 410
        # a second Leave with the spent key changes nothing and says so
        assert (await page.post("/api/leave", json={"resume": first["resume"]})).status_code == 410


async def test_renewing_a_key_does_not_stretch_the_visit_past_its_lifetime(site: Site) -> None:
    async with site.client() as page:
        first = await join(page, site)
        secret = site.settings.web_session_secret.get_secret_value()  # type: ignore[union-attr]
        key = key_of(secret, first["resume"], timedelta(minutes=30))
        began = utc_now() - VISIT_LIFETIME - timedelta(minutes=1)
        older = update(VisitRow).where(VisitRow.session_id == key.session_id)
        await site.store.write_waiting(lambda conn: conn.execute(older.values(created_at=began)))
        # the key itself is minutes old and unused: the visit is what has expired
        assert (await rejoin(page, first["resume"])).status_code == 410
