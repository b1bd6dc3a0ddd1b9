"""`python -m agent web` serves the web service; `python -m agent teachers` manages accounts.

teachers add NAME [--role safeguarding] [--display-name "Ms Rivera"] [--password-stdin]
teachers passwd NAME [--password-stdin]
teachers remove NAME [--hand-to OTHER]
teachers list

Passwords are asked for twice on a terminal, or read as one line from standard input with
`--password-stdin` (for scripts). Bad input exits 2; an unreachable database exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from agent.config.roster import RosterError
from agent.config.settings import RecordsSettings, SettingsError, WebSettings, load_settings
from agent.records.store import RecordsConfigError, RecordsStore
from agent.web.accounts import ROLES, AccountError, add_teacher, list_teachers, remove_teacher
from agent.web.accounts import set_password as change_password

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1


def add_parsers(commands: Any) -> None:
    """Register `web` and `teachers` on the `python -m agent` parser."""
    web = commands.add_parser("web", help="serve the student page and the teacher pages")
    web.add_argument("--host", help="address to listen on (default: WEB_HOST)")
    web.add_argument("--port", type=int, help="port to listen on (default: WEB_PORT)")

    teachers = commands.add_parser("teachers", help="add, remove or list teacher accounts")
    teachers.add_argument("--url", help="records database URL (default: RECORDS_URL)")
    sub = teachers.add_subparsers(dest="teachers_command", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="teacher")
    add.add_argument("--display-name", default="", help="how the pages greet them")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = sub.add_parser("passwd", help="set an account's password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    remove = sub.add_parser(
        "remove", help="delete an account, its classes handed to another teacher first"
    )
    remove.add_argument("username")
    remove.add_argument(
        "--hand-to", metavar="OTHER", help="the teacher who takes over the account's classes"
    )
    sub.add_parser("list", help="every account and its role")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agent.web.app import create_app
    from agent.web.deployment import server_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(WebSettings)
        RecordsStore(settings.records_url)  # an unusable RECORDS_URL fails here, in one line
        app = create_app(settings)  # reads the roster: its problems are said here too
    except (SettingsError, RecordsConfigError) as e:
        print(f"web: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RosterError as e:
        print(f"web: the tutor roster cannot be used:\n{e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    uvicorn.run(
        app,
        host=args.host or settings.web_host,
        port=args.port or settings.web_port,
        log_level="info",
        **server_options(settings),
    )
    return 0


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def run_teachers(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    try:
        url = args.url or load_settings(RecordsSettings).records_url
        if not url:
            raise RecordsConfigError("RECORDS_URL is empty: there is no store for accounts")
        store = RecordsStore(url)
        command = args.teachers_command
        password = (
            _read_password(args.password_stdin, stdin) if command in ("add", "passwd") else ""
        )
    except (SettingsError, RecordsConfigError, AccountError) as e:
        print(f"error: {e}", file=err)
        return EXIT_BAD_INPUT

    async def add() -> str:
        teacher = await add_teacher(
            store, args.username, password, role=args.role, display_name=args.display_name
        )
        return f"added {teacher.username} ({teacher.role})"

    async def passwd() -> str:
        await change_password(store, args.username, password)
        return f"password changed for {args.username}"

    async def remove() -> str:
        await remove_teacher(store, args.username, hand_to=args.hand_to)
        handed = f" (classes handed to {args.hand_to})" if args.hand_to else ""
        return f"removed {args.username}{handed}"

    async def listing() -> str:
        rows = [f"{t.username}\t{t.role}\t{t.display_name}" for t in await list_teachers(store)]
        return "\n".join(rows) if rows else "no teacher accounts"

    actions: dict[str, Callable[[], Awaitable[str]]] = {
        "add": add,
        "passwd": passwd,
        "remove": remove,
        "list": listing,
    }

    async def closing() -> str:
        try:
            return await actions[command]()
        finally:
            await store.aclose()

    try:
        text = asyncio.run(closing())
    except AccountError as e:
        print(f"error: {e}", file=err)
        return EXIT_BAD_INPUT
    except Exception as e:
        print(
            f"error: cannot use the records store at {store.describe()} ({type(e).__name__})",
            file=err,
        )
        return EXIT_UNAVAILABLE
    print(text, file=out)
    return 0
