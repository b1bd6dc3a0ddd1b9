"""`python -m agent teachers ...` and `python -m agent web`: accounts in a real store, every
bad-input path, and the service starting from its command."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx

from agent.__main__ import main
from agent.web.accounts import authenticate
from harness import REPO
from harness.databases import RecordsDatabase
from harness.web import SESSION_SECRET, unused_port


async def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the command in a thread (it runs its own event loop), capturing its output."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
        try:
            return main(list(argv))
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_add_list_passwd_and_remove_a_teacher(database: RecordsDatabase) -> None:
    url = database.url
    teachers = ("teachers", "--url", url)
    code, out, _ = await cli(
        *teachers,
        "add",
        "Rivera",
        "--display-name",
        "Ms Rivera",
        "--password-stdin",
        stdin="a long password\n",
    )
    assert (code, out.strip()) == (0, "added rivera (teacher)")
    code, _, _ = await cli(
        *teachers,
        "add",
        "lead",
        "--role",
        "safeguarding",
        "--password-stdin",
        stdin="another long one\n",
    )
    assert code == 0
    code, out, _ = await cli(*teachers, "list")
    assert code == 0
    assert [line.split("\t") for line in out.strip().splitlines()] == [
        ["lead", "safeguarding", "lead"],
        ["rivera", "teacher", "Ms Rivera"],
    ]
    store = database.store()
    try:
        assert (await authenticate(store, "rivera", "a long password")) is not None
        code, _, _ = await cli(
            *teachers, "passwd", "rivera", "--password-stdin", stdin="a new long password\n"
        )
        assert code == 0
        assert await authenticate(store, "rivera", "a long password") is None
        assert await authenticate(store, "rivera", "a new long password") is not None
        code, out, _ = await cli(*teachers, "remove", "rivera")
        assert (code, out.strip()) == (0, "removed rivera")
        assert await authenticate(store, "rivera", "a new long password") is None
    finally:
        await store.aclose()


async def test_bad_account_input_exits_2_with_one_line(database: RecordsDatabase) -> None:
    teachers = ("teachers", "--url", database.url)
    await cli(*teachers, "add", "rivera", "--password-stdin", stdin="a long password\n")
    cases = [
        (("add", "rivera", "--password-stdin"), "a long password\n", "already exists"),
        (("add", "okafor", "--password-stdin"), "short\n", "at least 10 characters"),
        (("add", "no spaces please", "--password-stdin"), "a long password\n", "username"),
        (("remove", "nobody"), "", "no teacher named 'nobody'"),
        (("passwd", "nobody", "--password-stdin"), "a long password\n", "no teacher named"),
    ]
    for argv, stdin, message in cases:
        code, out, err = await cli(*teachers, *argv, stdin=stdin)
        assert code == 2, argv
        assert err.count("\n") == 1 and message in err, err
        assert out == ""
    code, _, err = await cli("teachers", "--url", "mysql://x/y", "list")
    assert code == 2 and "unsupported database" in err


async def test_an_unreachable_store_exits_1(tmp_path: Path) -> None:
    port = unused_port()
    code, _, err = await cli(
        "teachers", "--url", f"postgresql+asyncpg://u:secret@127.0.0.1:{port}/db", "list"
    )
    assert code == 1 and "cannot use the records store" in err
    assert "secret" not in err


def test_the_web_command_serves_the_pages_and_refuses_bad_settings(tmp_path: Path) -> None:
    port = unused_port()
    env = {
        **os.environ,
        "RECORDS_URL": f"sqlite+aiosqlite:///{tmp_path / 'tutor.db'}",
        "WEB_SESSION_SECRET": SESSION_SECRET,
        "WEB_PORT": str(port),
    }
    bad = subprocess.run(
        [sys.executable, "-m", "agent", "web"],
        env={**env, "WEB_TOKEN_RATE_LIMIT": "lots"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "WEB_TOKEN_RATE_LIMIT" in bad.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "web"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        # uvicorn says when it listens: wait for that line (or the process ending)
        for line in server.stdout:
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError(f"the web service exited: {server.wait()}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/healthz").json() == {"ok": True}
            page = client.get("/")
            assert page.status_code == 200 and "Class code" in page.text
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert client.get("/teacher").status_code == 401
            unknown = client.post("/api/token", json={"code": "NOPE42", "name": "Maya"})
            assert unknown.status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=20)
