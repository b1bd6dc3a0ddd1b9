"""`python -m agent ...`: the web service, accounts, tokens, records, alerts and checks.

python -m agent web                                    the student page and teacher pages
python -m agent teachers add|passwd|remove|list        teacher accounts
python -m agent token --room ROOM --identity STUDENT [--session ID]
                                                       a token for the Agents Playground
                                                       (--session: continue that session)
python -m agent records list|show|export|delete|audit  what is kept about students
python -m agent alerts listen|test                     the alert webhooks
python -m agent check                                  settings, servers and endpoints
python -m agent eval [--models fake] [--judge MODEL]   routing, safety and answers measured
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from agent.config.roster import RosterError
from agent.config.settings import LiveKitSettings, SettingsError, load_settings
from agent.dispatch.token import DEFAULT_TTL, TokenRequestError, check_name, student_token
from agent.eval import cli as eval_cli
from agent.records import cli as records_cli
from agent.safety import cli as alerts_cli
from agent.web import cli as web_cli

PLAYGROUND_STEPS = """\
Join as the student:
  1. Open the LiveKit Agents Playground: https://agents-playground.livekit.io
     (or a self-hosted one), and choose to connect manually.
  2. Server URL: {url}
  3. Token: the line above.
  4. Connect and allow the microphone. The orchestrator joins and greets you.
The token is valid for {minutes} minutes, for room '{room}' only."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a student's access token")
    token.add_argument("--room", required=True, help="room to join")
    token.add_argument("--identity", required=True, help="the student's identity")
    token.add_argument(
        "--ttl-minutes",
        type=int,
        default=int(DEFAULT_TTL.total_seconds() // 60),
        help="validity in minutes (default: %(default)s)",
    )
    token.add_argument("--url", help="server URL to show (default: LIVEKIT_URL)")
    token.add_argument(
        "--session",
        help="continue this session: its tutor resumes from the records (default: a new one)",
    )
    web_cli.add_parsers(commands)
    records_cli.add_parser(commands)
    alerts_cli.add_parser(commands)
    eval_cli.add_parser(commands)
    commands.add_parser(
        "check",
        help="check settings, LiveKit, model endpoints, records store and compose layout",
    )
    args = parser.parse_args(argv)
    if args.command == "web":
        return web_cli.serve(args)
    if args.command == "teachers":
        return web_cli.run_teachers(args)
    if args.command == "records":
        return records_cli.run(args)
    if args.command == "alerts":
        return alerts_cli.run(args)
    if args.command == "eval":
        return eval_cli.run(args)
    if args.command == "check":
        from agent.check import main as check

        return check()

    try:
        settings = load_settings(LiveKitSettings)
        jwt = student_token(
            settings,
            room=args.room,
            identity=args.identity,
            ttl=timedelta(minutes=args.ttl_minutes),
            session_id=check_name("session", args.session) if args.session else None,
        )
    except (SettingsError, TokenRequestError, RosterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(jwt)
    steps = PLAYGROUND_STEPS.format(
        url=args.url or settings.livekit_url, minutes=args.ttl_minutes, room=args.room
    )
    print(steps, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
