"""A parent's request to see or erase a child's data (issue 21, item 3), through
`python -m agent records`, on both backends: the export holds everything about the
student, an erasure leaves no trace of them in any table (new tables included: the check
reads every table there is), nobody else's data goes with it, each is audited, and the
retention purge leaves no child's data older than the period anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from agent.__main__ import main
from agent.records.models import (
    AlertRecord,
    FlagRecord,
    SessionEnded,
    SessionStarted,
    TurnRecord,
)
from agent.records.resume import session_closed
from agent.records.retention import purge
from agent.records.schema import AuditRow, Base, VisitRow
from agent.records.store import RecordsStore, utc_now
from agent.web.classes import join_class
from harness.databases import RecordsDatabase
from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer
from harness.web import Site, open_site, seed_session, sign_in

# what only Maya's sessions hold: her name, her flagged words, her tutor's answer
MAYA_TRACES = ("maya", "nobody would miss me", "fifty-six")
KEPT = {"teachers", "classes", "audit_log", "alembic_version", "erased_sessions"}
# which sessions were erased, and nothing else: the audit log, and the tombstones that keep
# them erased
NAMES_ERASED_SESSIONS = {"audit_log", "erased_sessions"}


async def records(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        from contextlib import redirect_stderr, redirect_stdout

        with redirect_stdout(out), redirect_stderr(err):
            return main(["records", *argv])

    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


async def every_row(store: RecordsStore) -> dict[str, list[str]]:
    """Every table the database has (not only those this test knows), row by row."""
    async with store.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
        tables: dict[str, list[str]] = {}
        for name in names:
            rows = (await conn.exec_driver_sql(f'SELECT * FROM "{name}"')).all()
            tables[name] = [repr(tuple(row)).lower() for row in rows]
    return tables


async def class_of_two(site: Site) -> dict[str, Any]:
    """Maya (seeded, flagged) comes back another day as "maya"; Sam is in her class; the
    safeguarding lead reads Maya's flagged transcript."""
    school = site.school
    again = await join_class(site.store, site.settings, school.rivera_class.code, "maya")
    await seed_session(site.store, again.session_id, again.identity, again.room)
    sam = await join_class(site.store, site.settings, school.rivera_class.code, "Sam")
    await site.store.write_waiting(lambda conn: _sams_turn(conn, sam.session_id, sam.identity))
    async with site.client() as lead:
        assert await sign_in(lead, "lead") == 303
        viewed = await lead.get(f"/api/teacher/sessions/{school.session_id}")
        assert viewed.status_code == 200
    async with site.store.engine.connect() as conn:
        first = (
            await conn.execute(
                select(VisitRow.identity).where(VisitRow.session_id == school.session_id)
            )
        ).scalar_one()
    return {
        "maya": [school.session_id, again.session_id],
        "maya_identities": [first, again.identity],
        "sam": sam.session_id,
    }


async def _sams_turn(conn: Any, session_id: str, identity: str) -> None:
    from agent.records.schema import SessionRow, TurnRow

    now = utc_now()
    await conn.execute(
        SessionRow.__table__.insert().values(
            id=session_id, student=identity, room="r-sam", started_at=now
        )
    )
    await conn.execute(
        TurnRow.__table__.insert().values(
            session_id=session_id, item_id="t1", at=now, speaker="student", text="Why is sky blue"
        )
    )


async def test_exporting_a_student_gives_every_visit_session_flag_and_who_read_it(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        ids = await class_of_two(site)
        # two joins as "Maya"/"maya": which child is whose is for the school to say
        code, _, err = await records(
            "--url", database.url, "export", "--class", site.school.rivera_class.code.lower(),
            "--student", "MAYA",
        )  # fmt: skip
        assert code == 2 and all(f"--identity {i}" in err for i in ids["maya_identities"])
        picked = [arg for i in ids["maya_identities"] for arg in ("--identity", i)]
        code, out, err = await records(
            "--url", database.url, "export", "--class", site.school.rivera_class.code.lower(),
            "--student", "MAYA", *picked, "--by", "office", "--reason", "parent asked",
        )  # fmt: skip
        assert code == 0, err
        doc = json.loads(out)
        assert doc["format"] == "voice-tutor.student.v1"
        assert sorted(v["session_id"] for v in doc["visits"]) == sorted(ids["maya"])
        assert sorted(s["session"]["id"] for s in doc["sessions"]) == sorted(ids["maya"])
        flagged = [f["text"] for s in doc["sessions"] for f in s["flags"]]
        assert flagged == ["nobody would miss me"] * 2
        assert [v["by"] for v in doc["transcript_views"]] == ["lead"]
        assert ids["sam"] not in out and "Why is sky blue" not in out

        async with site.store.engine.connect() as conn:
            (entry,) = (await conn.execute(select(AuditRow))).all()
        assert (entry.actor, entry.action, entry.reason) == ("office", "export", "parent asked")
        assert entry.rows["sessions"] == 2 and "maya" not in entry.target.lower()


async def test_erasing_a_student_leaves_no_trace_of_them_and_keeps_everyone_else(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        ids = await class_of_two(site)
        before = await every_row(site.store)
        class_code = site.school.rivera_class.code

        picked = [arg for i in ids["maya_identities"] for arg in ("--identity", i)]
        code, out, _ = await records(
            "--url", database.url, "delete", "--class", class_code, "--student", "Maya", *picked
        )
        assert code == 0 and "would delete" in out and "--yes" in out
        assert await every_row(site.store) == before  # without --yes: nothing

        code, out, err = await records(
            "--url", database.url, "delete", "--class", class_code, "--student", "Maya",
            *picked, "--yes", "--by", "head teacher", "--reason", "parent's request",
        )  # fmt: skip
        assert code == 0, err
        after = await every_row(site.store)
        for table, rows in after.items():
            for row in rows:
                for trace in MAYA_TRACES:
                    assert trace not in row, f"{trace!r} left in {table}: {row}"
                for session_id in ids["maya"]:
                    if table != "erased_sessions":  # the random id, kept to keep it erased
                        assert session_id.lower() not in row, f"Maya's session left in {table}"
        assert any(ids["sam"].lower() in row for row in after["visits"])
        assert any("why is sky blue" in row for row in after["turns"])
        assert after["classes"] == before["classes"]

        async with site.store.engine.connect() as conn:
            (entry,) = (await conn.execute(select(AuditRow))).all()
        assert (entry.actor, entry.action) == ("head teacher", "delete")
        assert entry.rows["sessions"] == 2 and entry.rows["visits"] == 2
        assert entry.rows["flags"] == 2 and entry.rows["transcript_views"] == 1
        code, out, _ = await records("--url", database.url, "audit")
        assert code == 0 and "head teacher" in out and f"a student of class {class_code}" in out


async def test_erasing_a_session_or_a_class_takes_all_of_it(database: RecordsDatabase) -> None:
    async for site in open_site(database):
        ids = await class_of_two(site)
        code, _, err = await records(
            "--url", database.url, "delete", "--session", ids["sam"], "--yes"
        )
        assert code == 0, err
        for table, rows in (await every_row(site.store)).items():
            if table not in NAMES_ERASED_SESSIONS:
                assert not [row for row in rows if ids["sam"].lower() in row], table

        code, _, err = await records(
            "--url", database.url, "delete", "--class", site.school.rivera_class.code, "--yes"
        )
        assert code == 0, err
        left = await every_row(site.store)
        codes = " ".join(left["classes"])
        assert site.school.rivera_class.code.lower() not in codes
        assert site.school.okafor_class.code.lower() in codes
        for table, rows in left.items():
            if table not in KEPT:
                assert rows == [], f"{table} still holds {rows}"


async def test_a_session_erased_while_its_tutor_still_talks_stays_erased(
    database: RecordsDatabase,
) -> None:
    """A parent's erasure of a session still going on: what its worker writes afterwards
    (the session's end, a last turn, a flag, its alert) is dropped by the database, so no
    row of it comes back where no later erasure could reach it."""
    async for site in open_site(database):
        ids = await class_of_two(site)
        sam = ids["sam"]
        code, _, err = await records("--url", database.url, "delete", "--session", sam, "--yes")
        assert code == 0, err
        t = time.time()
        await site.store.write(
            [
                SessionStarted(sam, "sam-1", "r-sam", at=t),
                TurnRecord(sam, "t2", "student", "Why is the sea salty", t + 1),
                FlagRecord(sam, "f1", "student", "concern", ["x"], {}, "l", "w", at=t + 2),
                AlertRecord("a1", sam, "f1", "teacher", "concern", {}, at=t + 2),
                SessionEnded(sam, "student_left", at=t + 3),
            ]
        )
        for table, rows in (await every_row(site.store)).items():
            if table not in NAMES_ERASED_SESSIONS:
                assert not [row for row in rows if sam.lower() in row], table
        # another child's conversation is written as ever
        other = await join_class(site.store, site.settings, site.school.rivera_class.code, "Ada")
        await site.store.write([SessionStarted(other.session_id, other.identity, other.room)])
        assert any(
            other.session_id.lower() in row for row in (await every_row(site.store))["sessions"]
        )


async def test_erasing_a_session_still_going_on_ends_it_on_the_server(
    database: RecordsDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erased session's room is deleted through the server's API (its tutor and
    dispatches with it), and a tutor that an old token brings later finds it erased."""
    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        monkeypatch.setenv("LIVEKIT_URL", livekit.url)
        monkeypatch.setenv("LIVEKIT_API_SECRET", DEFAULT_SECRET)
        async for site in open_site(database):
            ids = await class_of_two(site)
            async with site.store.engine.connect() as conn:
                query = select(VisitRow.room).where(VisitRow.session_id == ids["sam"])
                room = (await conn.execute(query)).scalar_one()
            assert not await session_closed(site.store, ids["sam"])
            code, out, err = await records(
                "--url", database.url, "delete", "--session", ids["sam"], "--yes"
            )
            assert code == 0, err
            assert livekit.deleted_rooms == [room] and "closed 1 of 1 room(s)" in out
            assert await session_closed(site.store, ids["sam"])


async def test_the_retention_purge_empties_every_table_of_childrens_data(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        await class_of_two(site)
        deleted = await purge(site.store, older_than_days=30, now=utc_now() + timedelta(days=31))
        assert deleted == 3
        left = await every_row(site.store)
        for table, rows in left.items():
            if table not in KEPT:
                assert rows == [], f"{table} still holds {rows} after the purge"
        assert len(left["audit_log"]) == 1 and "purge" in left["audit_log"][0]
        assert set(left) >= {t.name for t in Base.metadata.sorted_tables}


async def test_naming_nobody_is_refused_with_one_line(database: RecordsDatabase) -> None:
    async for site in open_site(database):
        code_ = site.school.rivera_class.code
        cases = [
            (["delete", "--class", code_, "--student", "Nobody", "--yes"], "no student named"),
            (["delete", "--class", "ZZZZZZ", "--yes"], "no class with the code"),
            (["delete", "--session", "no-such", "--yes"], "no session"),
            (["delete", "--student", "Maya", "--yes"], "--student needs --class"),
            (["delete", "--yes"], "either a session, or a class"),
            (["export", "--class", code_], "one student"),
        ]
        for argv, message in cases:
            code, _, err = await records("--url", database.url, *argv)
            assert code == 2 and message in err and len(err.strip().splitlines()) == 1, argv
        assert (await every_row(site.store))["audit_log"] == []


async def test_a_resumed_conversation_leaves_out_what_moderation_took_out(
    database: RecordsDatabase,
) -> None:
    """A student turn that was flagged, or answered with a fixed line because it could not
    be checked, does not come back in front of the model when the session resumes."""
    from agent.records.models import FlagRecord, SessionStarted, TurnRecord
    from agent.records.resume import find_resumption
    from agent.safety.lines import ONE_MOMENT_LINE, REDIRECT_LINE, SORRY_LINE

    store = database.store()
    t0 = 1_790_000_000.0
    said = [
        ("t1", "student", "what is seven times eight"),
        ("t2", "math", "It is 56."),
        ("t3", "student", "something unkind a child should not say"),
        ("t4", "math", REDIRECT_LINE),
        ("t5", "student", "words the moderation could not check"),
        ("t6", "math", f"{ONE_MOMENT_LINE} {SORRY_LINE}"),
        ("t7", "student", "and nine times eight"),
        ("t8", "math", "It is 72."),
    ]
    try:
        await store.write(
            [
                SessionStarted("s-flag", "kid-1", "room"),
                *(
                    TurnRecord("s-flag", item, speaker, text, at=t0 + n)
                    for n, (item, speaker, text) in enumerate(said)
                ),
                FlagRecord(
                    "s-flag",
                    "f1",
                    "student",
                    "concern",
                    ["harassment"],
                    {},
                    "redirected",
                    said[2][2],
                    at=t0 + 2.5,
                    turn_item_id="t3",
                ),
            ]
        )
        resumption = await find_resumption(store, "s-flag")
        assert resumption is not None
        texts = [text for _role, text in resumption.conversation.turns]
        assert said[2][2] not in texts and said[4][2] not in texts
        assert "what is seven times eight" in texts and "and nine times eight" in texts
    finally:
        await store.aclose()


async def test_two_children_with_one_name_are_never_exported_or_erased_together(
    database: RecordsDatabase,
) -> None:
    """ "Sam" and "sam" in one class: a parent's request names one child, so a name that two
    children joined with is refused, listing both; the school picks one with --identity."""
    async for site in open_site(database):
        code = site.school.rivera_class.code
        first = await join_class(site.store, site.settings, code, "Sam")
        other = await join_class(site.store, site.settings, code, "sam")
        for joined in (first, other):
            await site.store.write_waiting(
                lambda conn, j=joined: _sams_turn(conn, j.session_id, j.identity)
            )
        before = await every_row(site.store)
        for command in ("export", "delete"):
            status, out, err = await records(
                "--url", database.url, command, "--class", code, "--student", "Sam", "--yes"
            ) if command == "delete" else await records(
                "--url", database.url, command, "--class", code, "--student", "Sam"
            )  # fmt: skip
            assert status == 2 and out == ""
            assert f"--identity {first.identity}" in err and f"--identity {other.identity}" in err
        assert await every_row(site.store) == before
        status, out, err = await records(
            "--url", database.url, "export", "--class", code, "--student", "Sam",
            "--identity", first.identity,
        )  # fmt: skip
        assert status == 0, err
        assert [v["session_id"] for v in json.loads(out)["visits"]] == [first.session_id]


async def test_reading_a_transcript_at_the_terminal_is_audited(database: RecordsDatabase) -> None:
    """`records show` is an adult reading a child's conversation, as on the teacher pages:
    who, when and which session go into the audit log (the child's name does not)."""
    async for site in open_site(database):
        session = site.school.session_id
        code, out, err = await records(
            "--url", database.url, "show", session, "--by", "office", "--reason", "complaint"
        )
        assert code == 0, err
        assert "What is seven times eight?" in out
        async with site.store.engine.connect() as conn:
            (entry,) = (await conn.execute(select(AuditRow))).all()
        assert (entry.actor, entry.action, entry.reason) == ("office", "view", "complaint")
        assert entry.target == f"session {session}" and entry.rows == {"turns": 3}


async def test_an_erased_childs_name_does_not_stay_in_the_audit_logs_reasons(
    database: RecordsDatabase,
) -> None:
    """An export "for Maya's parents" was audited with that reason; Maya is then erased
    (with a reason naming her too): no reason in the audit log names her afterwards."""
    async for site in open_site(database):
        ids = await class_of_two(site)
        class_code = site.school.rivera_class.code
        picked = [arg for i in ids["maya_identities"] for arg in ("--identity", i)]
        code, _, err = await records(
            "--url", database.url, "export", "--class", class_code, "--student", "Maya",
            *picked, "--reason", "asked by MAYA's parents",
        )  # fmt: skip
        assert code == 0, err
        code, _, err = await records(
            "--url", database.url, "delete", "--class", class_code, "--student", "Maya",
            *picked, "--yes", "--reason", "maya left the school",
        )  # fmt: skip
        assert code == 0, err
        async with site.store.engine.connect() as conn:
            entries = await conn.execute(select(AuditRow).order_by(AuditRow.id))
            reasons = [row.reason for row in entries.all()]
        assert len(reasons) == 2 and not any("maya" in reason.lower() for reason in reasons)
        assert reasons[0] == "asked by [a child's name]'s parents"
