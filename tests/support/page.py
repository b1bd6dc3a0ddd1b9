"""The student page on the real server, as the real-server tests drive it: a class to join,
and the page joined in Chromium (with the web service's answer, token and resume key)."""

from __future__ import annotations

import secrets
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from agent.records import RecordsStore
from agent.web.accounts import add_teacher
from agent.web.classes import create_class
from tests.test_web_browser import PHONE


async def class_code(env: dict[str, str]) -> str:
    """An open class of a new teacher in the stack's records store."""
    store = RecordsStore(env["RECORDS_URL"])
    try:
        await store.ensure_schema()
        teacher = await add_teacher(store, f"t{secrets.token_hex(4)}", "correct horse battery")
        return (await create_class(store, teacher.id, "Year 4 Maple")).code
    finally:
        await store.aclose()


async def open_page(
    opener: Browser | BrowserContext, url: str, code: str, name: str = "Maya"
) -> tuple[Page, dict[str, Any]]:
    """The student page (a phone's size), joined with `code`; returns it and the service's
    answer (room, identity, token, resume key)."""
    if isinstance(opener, Browser):
        page = await opener.new_page(viewport=PHONE)
    else:
        page = await opener.new_page()
        await page.set_viewport_size(PHONE)
    await page.goto(url + "/")
    await page.get_by_label("Class code").fill(code)
    await page.get_by_label("Your first name").fill(name)
    async with page.expect_response("**/api/token") as answer:
        await page.get_by_role("button", name="Start").click()
    return page, await (await answer.value).json()
