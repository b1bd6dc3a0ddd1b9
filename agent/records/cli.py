"""`python -m agent records list|show|export|delete|purge|audit`: what the records store
holds about the children, and a parent's request to see or erase it.

records export SESSION                           one session (JSON)
records export --class CODE --student NAME       everything about one student (JSON)
records delete --session ID | --class CODE [--student NAME] [--yes] [--by WHO] [--reason WHY]
records audit                                    the exports, erasures and purges done

`export SESSION --format json` is the stable interface other tools read (see
`RecordsStore.export`). A delete without `--yes` only shows what it would delete; with it,
the erased visits' rooms are deleted on the LiveKit server too (with LIVEKIT_* set), so a
conversation still going on ends. Exports
and deletions go into the audit log (who, when, what, how many rows). Bad input (an
unknown session, class or student, an unusable RECORDS_URL) prints one line and exits 2;
a database that cannot be reached prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TextIO

from livekit import api

from agent.config.settings import LiveKitSettings, RecordsSettings, SettingsError, load_settings
from agent.records.erasure import (
    Ambiguous,
    NotFound,
    Scope,
    audit_log,
    erase,
    export_student,
    note_export,
    note_view,
    preview,
    rooms_of,
)
from agent.records.retention import purge
from agent.records.store import RecordsConfigError, RecordsStore, SessionSummary

ROOM_CALL_TIMEOUT = 5.0
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1


class UnknownSession(LookupError):
    pass


def add_parser(commands: Any) -> None:
    """Register `records` and its subcommands on the `python -m agent` parser."""
    records = commands.add_parser(
        "records", help="list, show, export, delete or purge what is recorded about students"
    )
    records.add_argument("--url", help="records database URL (default: RECORDS_URL)")
    sub = records.add_subparsers(dest="records_command", required=True)
    listing = sub.add_parser("list", help="sessions, newest first")
    listing.add_argument("--student", help="only this student's sessions")
    listing.add_argument("--flagged", action="store_true", help="only sessions with a flag")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = sub.add_parser("show", help="a session's transcript, readable (audited)")
    show.add_argument("session", help="session id")
    _add_requester(show)
    export = sub.add_parser(
        "export", help="a session, or everything about one student, as one JSON document"
    )
    export.add_argument("session", nargs="?", help="session id")
    export.add_argument("--class", dest="class_code", metavar="CODE", help="the student's class")
    export.add_argument("--student", metavar="NAME", help="the first name they joined with")
    export.add_argument(
        "--identity",
        action="append",
        default=[],
        help="which child of that name (repeatable; listed when the name matches several)",
    )
    export.add_argument("--format", choices=["json"], default="json")
    _add_requester(export)
    erase_ = sub.add_parser(
        "delete", help="erase one session, one student (class and name) or a whole class"
    )
    erase_.add_argument("--session", metavar="ID", help="one session")
    erase_.add_argument("--class", dest="class_code", metavar="CODE", help="a class (all of it)")
    erase_.add_argument("--student", metavar="NAME", help="with --class: only this student")
    erase_.add_argument(
        "--identity",
        action="append",
        default=[],
        help="which child of that name (repeatable; listed when the name matches several)",
    )
    erase_.add_argument("--yes", action="store_true", help="delete (without: only show what)")
    _add_requester(erase_)
    purge = sub.add_parser("purge", help="delete sessions older than the retention period")
    purge.add_argument("--days", type=float, help="default: RECORDS_RETENTION_DAYS")
    audit = sub.add_parser("audit", help="the exports, erasures and purges done, newest first")
    audit.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def _add_requester(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", help="who asks, for the audit log (default: the login name)")
    parser.add_argument("--reason", default="", help="why, for the audit log")


def _scope(args: argparse.Namespace) -> Scope:
    session = getattr(args, "session", None)
    if args.student is not None and args.class_code is None:
        raise RecordsConfigError("--student needs --class: a student is named by class code")
    try:
        return Scope(
            session_id=session,
            class_code=args.class_code,
            student=args.student,
            identities=tuple(args.identity),
        )
    except ValueError as e:
        raise RecordsConfigError(str(e)) from None


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = load_settings(RecordsSettings)
        url = args.url or settings.records_url
        if not url:
            raise RecordsConfigError("RECORDS_URL is empty: records are off, nothing to read")
        if args.records_command == "purge" and args.days is not None and args.days <= 0:
            raise RecordsConfigError("--days must be a positive number of days")
        scope = None
        if args.records_command == "delete" or (
            args.records_command == "export" and args.session is None
        ):
            scope = _scope(args)
            if args.records_command == "export" and scope.student is None:
                raise RecordsConfigError("export one session, or one student: --class --student")
        store = RecordsStore(url)
    except (SettingsError, RecordsConfigError) as e:
        print(f"error: {e}", file=err)
        return EXIT_BAD_INPUT
    actions: dict[str, Callable[[], Awaitable[str]]] = {
        "list": lambda: _list(store, args),
        "show": lambda: _show(store, args.session, actor=_requester(args), reason=args.reason),
        "export": lambda: _export(store, args, scope),
        "delete": lambda: _delete(store, args, scope),  # type: ignore[arg-type]
        "purge": lambda: _purge(store, args.days or settings.records_retention_days),
        "audit": lambda: _audit(store, max(1, args.limit)),
    }
    try:
        text = asyncio.run(_closing(store, actions[args.records_command]()))
    except UnknownSession as e:
        print(f"error: no session {e.args[0]!r} in {store.describe()}", file=err)
        return EXIT_BAD_INPUT
    except NotFound as e:
        print(f"error: {e} in {store.describe()}", file=err)
        return EXIT_BAD_INPUT
    except Ambiguous as e:
        print(f"error: {e}", file=err)
        return EXIT_BAD_INPUT
    except Exception as e:
        print(
            f"error: cannot read records at {store.describe()} ({type(e).__name__}: "
            f"{_first_line(e)})",
            file=err,
        )
        return EXIT_UNAVAILABLE
    print(text, file=out)
    return 0


async def _closing(store: RecordsStore, action: Awaitable[str]) -> str:
    try:
        return await action
    finally:
        await store.aclose()


async def _list(store: RecordsStore, args: argparse.Namespace) -> str:
    sessions = await store.list_sessions(
        student=args.student, flagged=args.flagged, limit=max(1, args.limit)
    )
    if not sessions:
        return "no sessions"
    header = ("session", "student", "started (UTC)", "length", "turns", "flags", "subjects")
    rows = [header, *(_summary_row(s) for s in sessions)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _summary_row(summary: SessionSummary) -> tuple[str, ...]:
    return (
        summary.id,
        summary.student,
        summary.started_at.strftime("%Y-%m-%d %H:%M"),
        _length(summary.started_at, summary.ended_at),
        str(summary.turns),
        str(summary.flags),
        ", ".join(summary.subjects) or "-",
    )


def _length(started: datetime, ended: datetime | None) -> str:
    if ended is None:
        return "open"
    seconds = int((ended - started).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s"


async def _show(store: RecordsStore, session_id: str, *, actor: str, reason: str) -> str:
    """The transcript, read by a person: as an adult's view of it on the teacher pages, it
    is written to the audit log."""
    doc = await _document(store, session_id)
    seen = {"turns": len(doc["turns"])}
    await note_view(store, Scope(session_id=session_id), seen, actor=actor, reason=reason)
    session = doc["session"]
    lines = [
        f"session {session['id']}  student {session['student']}  room {session['room']}",
        f"started {session['started_at']}  ended {session['ended_at'] or '-'}"
        f"  ({session['end_reason'] or 'open'})",
        "",
    ]
    events = [(t["at"], 0, _turn_line(t)) for t in doc["turns"]]
    events += [(h["requested_at"], 1, _handoff_line(h)) for h in doc["handoffs"]]
    events += [(f["at"], 2, _flag_line(f)) for f in doc["flags"]]
    lines += [line for _at, _order, line in sorted(events, key=lambda e: (e[0], e[1]))]
    return "\n".join(lines)


def _clock(at: str) -> str:
    return at[11:19]


def _turn_line(turn: dict[str, Any]) -> str:
    who = "student" if turn["role"] == "student" else f"tutor:{turn['speaker']}"
    marks = "".join(
        [" (passed on)" if turn["synthetic"] else "", " (cut off)" if turn["interrupted"] else ""]
    )
    return f"{_clock(turn['at'])}  {who:<20} {turn['text']}{marks}"


def _handoff_line(handoff: dict[str, Any]) -> str:
    return (
        f"{_clock(handoff['requested_at'])}  -- handoff {handoff['from'] or '?'} -> "
        f"{handoff['to']} ({handoff['mode']}, {handoff['outcome']})"
    )


def _flag_line(flag: dict[str, Any]) -> str:
    return (
        f"{_clock(flag['at'])}  !! {flag['tier']} flag on {flag['speaker']}: "
        f"{', '.join(flag['categories'])} -> {flag['action']}"
    )


async def _export(store: RecordsStore, args: argparse.Namespace, scope: Scope | None) -> str:
    if scope is None:
        doc = await _document(store, args.session)
        rows = {"sessions": 1, "turns": len(doc["turns"]), "flags": len(doc["flags"])}
        await note_export(
            store, Scope(session_id=args.session), rows, actor=_requester(args), reason=args.reason
        )
    else:
        doc = await export_student(store, scope, actor=_requester(args), reason=args.reason)
    return json.dumps(doc, indent=2, ensure_ascii=False)


async def _delete(store: RecordsStore, args: argparse.Namespace, scope: Scope) -> str:
    if not args.yes:
        counts = await preview(store, scope)
        return (
            f"{scope.describe()}: would delete {_rows(counts)}\n"
            "nothing deleted: run again with --yes to delete"
        )
    rooms = await rooms_of(store, scope)
    deleted = await erase(store, scope, actor=_requester(args), reason=args.reason)
    return f"{scope.describe()}: deleted {_rows(deleted)}\n{await _close_rooms(rooms)}"


async def _close_rooms(rooms: list[str]) -> str:
    """End the erased sessions still going on: their rooms are deleted on the LiveKit server
    (participants and dispatches with them), when this process has its settings."""
    if not rooms:
        return "no room to close"
    try:
        settings = load_settings(LiveKitSettings)
    except SettingsError:
        return (
            f"{len(rooms)} room(s) not closed: no LiveKit settings here (a conversation "
            "still going on keeps talking, but nothing more of it is recorded)"
        )
    closed = 0
    async with api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
    ) as lk:
        for room in rooms:
            try:
                async with asyncio.timeout(ROOM_CALL_TIMEOUT):
                    await lk.room.delete_room(api.DeleteRoomRequest(room=room))
                closed += 1
            except Exception:  # gone already (it ended), or the server is away
                continue
    return f"closed {closed} of {len(rooms)} room(s) on the LiveKit server (the rest had ended)"


def _rows(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {table}" for table, n in counts.items()) or "nothing"


def _requester(args: argparse.Namespace) -> str:
    if args.by:
        return args.by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def _audit(store: RecordsStore, limit: int) -> str:
    entries = await audit_log(store, limit=limit)
    if not entries:
        return "no exports, erasures or purges yet"
    lines = []
    for e in entries:
        why = f"  ({e.reason})" if e.reason else ""
        lines.append(
            f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<12} {e.action:<6} {e.target}: "
            f"{_rows(e.rows)}{why}"
        )
    return "\n".join(lines)


async def _document(store: RecordsStore, session_id: str) -> dict[str, Any]:
    doc = await store.export(session_id)
    if doc is None:
        raise UnknownSession(session_id)
    return doc


async def _purge(store: RecordsStore, days: float) -> str:
    deleted = await purge(store, older_than_days=days)
    return f"deleted {deleted} session(s) started more than {days:g} day(s) ago"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else "no detail"
