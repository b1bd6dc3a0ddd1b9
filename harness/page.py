"""The browser: Debian's Chromium as the tests drive it (flags, a fake microphone, screenshots),
the student page's script, and the page joined on the real server with a class to join."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from agent.records import RecordsStore
from agent.web.accounts import add_teacher
from agent.web.classes import create_class
from harness import REPO

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
CHROMIUM_INSTALLED = Path(CHROMIUM).exists()
FRONTEND = REPO / "agent" / "web" / "frontend"
STUDENT_SCRIPT = REPO / "agent" / "web" / "static" / "student.js"
FAKE_MICROPHONE = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", REPO / "build" / "screenshots"))
# generous: a loaded CI machine; the pages themselves answer in well under a second
WAIT_MS = 30_000


def build_student_script() -> Path:
    """The page's script, built from the npm lock file if it is not built yet."""
    if not STUDENT_SCRIPT.exists():
        npm = shutil.which("npm")
        assert npm, "Node's npm is needed to build the student page's script"
        for step in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
            subprocess.run([npm, *step], cwd=FRONTEND, check=True, timeout=600)
    return STUDENT_SCRIPT


async def screenshot(page: Page, name: str) -> None:
    # playwright creates the directory
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


TEACHER_PASSWORD = "correct horse battery"


async def teacher_with_class(env: dict[str, str]) -> tuple[str, str]:
    """A new teacher (their username; the password is `TEACHER_PASSWORD`) with an open
    class (its code) in the stack's records store."""
    store = RecordsStore(env["RECORDS_URL"])
    try:
        await store.ensure_schema()
        teacher = await add_teacher(store, f"t{secrets.token_hex(4)}", TEACHER_PASSWORD)
        return teacher.username, (await create_class(store, teacher.id, "Year 4 Maple")).code
    finally:
        await store.aclose()


async def class_code(env: dict[str, str]) -> str:
    """An open class of a new teacher in the stack's records store."""
    return (await teacher_with_class(env))[1]


async def sign_in_page(page: Page, url: str, username: str) -> None:
    """Sign in as `username` on the teacher's page, as a teacher does."""
    await page.goto(url + "/teacher")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(TEACHER_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(url + "/teacher")


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
