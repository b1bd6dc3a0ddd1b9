"""`python -m agent records ...` against real databases: output, and every bad-input path."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

from agent.__main__ import main
from agent.records.models import FlagRecord, HandoffRecord, SessionEnded, SessionStarted, TurnRecord
from harness import REPO
from harness.databases import RecordsDatabase

T0 = 1_790_000_000.0  # 2026-09-21


async def seed(database: RecordsDatabase) -> None:
    store = database.store()
    try:
        await store.write(
            [
                SessionStarted("s-math", "kid-1", "class-4b-x1", at=T0),
                TurnRecord("s-math", "i1", "student", "What is 7 times 8?", at=T0 + 1),
                TurnRecord("s-math", "i2", "orchestrator", "Let me connect you!", at=T0 + 2),
                TurnRecord("s-math", "i3", "math", "It is 56.", at=T0 + 3),
                HandoffRecord(
                    "s-math",
                    "h1",
                    "orchestrator",
                    "math",
                    "in_session",
                    "completed",
                    "What is 7 times 8?",
                    requested_at=T0 + 1.5,
                    completed_at=T0 + 1.6,
                ),
                FlagRecord(
                    "s-math",
                    "f1",
                    "student",
                    "concern",
                    ["harassment"],
                    {"harassment": 0.7},
                    "redirected",
                    "a rude word",
                    at=T0 + 1.2,
                ),
                SessionEnded("s-math", "participant_disconnected", at=T0 + 95),
                SessionStarted("s-other", "kid-2", "class-4b-x2", at=T0 + 10),
                TurnRecord("s-other", "i9", "student", "Hello", at=T0 + 11),
            ]
        )
    finally:
        await store.aclose()


async def cli(*argv: str) -> tuple[int, str, str]:
    """Run the command in a thread (it runs its own event loop), capturing its output."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            return main(list(argv))
        finally:
            sys.stdout, sys.stderr = stdout, stderr

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_list_shows_sessions_newest_first_with_subjects_and_flags(
    database: RecordsDatabase,
) -> None:
    await seed(database)
    code, out, _ = await cli("records", "--url", database.url, "list")
    assert code == 0
    header, newest, oldest = out.strip().splitlines()
    assert header.split()[:3] == ["session", "student", "started"]
    assert newest.split()[:2] == ["s-other", "kid-2"] and "open" in newest
    assert oldest.split()[:2] == ["s-math", "kid-1"]
    assert "1m35s" in oldest and oldest.split()[-1] == "math"

    code, out, _ = await cli("records", "--url", database.url, "list", "--flagged")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["s-math"]
    code, out, _ = await cli("records", "--url", database.url, "list", "--student", "kid-2")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["s-other"]


async def test_show_prints_the_transcript_with_speakers_handoffs_and_flags(
    database: RecordsDatabase,
) -> None:
    await seed(database)
    code, out, _ = await cli("records", "--url", database.url, "show", "s-math")
    assert code == 0
    body = [line.split(None, 1)[1] for line in out.strip().splitlines()[3:]]
    assert body == [
        "student              What is 7 times 8?",
        "!! concern flag on student: harassment -> redirected",
        "-- handoff orchestrator -> math (in_session, completed)",
        "tutor:orchestrator   Let me connect you!",
        "tutor:math           It is 56.",
    ]


async def test_export_is_one_json_document_of_the_whole_session(
    database: RecordsDatabase,
) -> None:
    await seed(database)
    code, out, _ = await cli("records", "--url", database.url, "export", "s-math")
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "voice-tutor.session.v1"
    assert doc["session"]["end_reason"] == "participant_disconnected"
    assert [t["speaker"] for t in doc["turns"]] == ["student", "orchestrator", "math"]
    assert [t["role"] for t in doc["turns"]] == ["student", "tutor", "tutor"]
    assert doc["handoffs"][0]["to"] == "math" and doc["flags"][0]["tier"] == "concern"


async def test_an_unknown_session_is_one_line_and_exit_2(database: RecordsDatabase) -> None:
    await seed(database)
    for command in ("show", "export"):
        code, out, err = await cli("records", "--url", database.url, command, "no-such")
        assert (code, out) == (2, "")
        assert err.count("\n") == 1 and "no session 'no-such'" in err


async def test_bad_urls_are_one_line_and_exit_2_and_an_unreachable_database_exit_1() -> None:
    for url in ("not a url at all", "mysql://u@h/db", "sqlite+aiosqlite:///:memory:"):
        code, _, err = await cli("records", "--url", url, "list")
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: RECORDS_URL")
    code, _, err = await cli(
        "records", "--url", "postgresql://kid:hunter2@127.0.0.1:1/tutor", "list"
    )
    assert code == 1 and err.count("\n") == 1 and "cannot read records" in err
    assert "hunter2" not in err  # the password is never printed


async def test_purge_refuses_a_non_positive_period(database: RecordsDatabase) -> None:
    code, _, err = await cli("records", "--url", database.url, "purge", "--days", "0")
    assert code == 2 and "--days" in err
    code, out, _ = await cli("records", "--url", database.url, "purge", "--days", "1")
    assert code == 0 and out.startswith("deleted 0 session(s)")


def test_the_module_command_exports_json_from_the_environment_url(tmp_path: Path) -> None:
    """As an operator runs it: `python -m agent records export`, RECORDS_URL from the env."""
    db = RecordsDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'tutor.db'}")
    asyncio.run(seed(db))
    done = subprocess.run(
        [sys.executable, "-m", "agent", "records", "export", "s-math", "--format", "json"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "RECORDS_URL": db.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["session"]["id"] == "s-math"
