"""Removing a teacher never drops or hides a child's conversation (issue 21, item 2): the
classes, their visits, sessions and urgent flags go to another teacher, and stay in the
safeguarding lead's view; without someone to take them, the removal is refused."""

from __future__ import annotations

import pytest

from agent.web.accounts import AccountError, remove_teacher, teacher_by_id
from agent.web.routes.live import background_done
from agent.web.teacher_data import can_view, flags_for, sessions_for, transcript
from harness.databases import RecordsDatabase
from harness.web import open_site, sign_in


async def test_a_teacher_with_classes_is_not_removed_without_someone_to_take_them(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        school = site.school
        with pytest.raises(AccountError, match="hand them to another teacher"):
            await remove_teacher(site.store, "rivera")
        with pytest.raises(AccountError, match="no other teacher"):
            await remove_teacher(site.store, "rivera", hand_to="rivera")
        assert await teacher_by_id(site.store, school.rivera.id) is not None
        assert await can_view(site.store, school.rivera, school.session_id)


async def test_a_removed_teachers_flagged_session_stays_whole_for_the_next_teacher_and_the_lead(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        school, store = site.school, site.store
        async with site.client() as rivera:
            assert await sign_in(rivera, "rivera") == 303
            await remove_teacher(store, "rivera", hand_to="okafor")
            assert (await rivera.get("/api/teacher/me")).status_code == 401  # signed out

        for adult in (school.okafor, school.lead):
            assert await can_view(store, adult, school.session_id)
            flags = await flags_for(store, adult)
            assert [f.session_id for f in flags if f.tier == "urgent"] == [school.session_id]
            shown = await transcript(store, adult, school.session_id)
            assert shown is not None and school.flagged_words in str(shown)
        assert school.session_id in [s.session_id for s in await sessions_for(store, school.okafor)]
        async with site.client() as lead:
            assert await sign_in(lead, "lead") == 303
            detail = await lead.get(f"/api/teacher/sessions/{school.session_id}")
            assert detail.status_code == 200


async def test_the_database_itself_refuses_to_drop_a_teachers_classes(
    database: RecordsDatabase,
) -> None:
    """No cascade behind the account code's back: deleting a teacher row that still has
    classes, or a class that still has visits, fails in the database."""
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    from agent.records.schema import ClassRow, TeacherRow

    async for site in open_site(database):
        school = site.school
        with pytest.raises(IntegrityError):
            async with site.store.engine.begin() as conn:
                await conn.execute(delete(TeacherRow).where(TeacherRow.id == school.rivera.id))
        with pytest.raises(IntegrityError):
            async with site.store.engine.begin() as conn:
                await conn.execute(delete(ClassRow).where(ClassRow.id == school.rivera_class.id))
        assert await can_view(site.store, school.lead, school.session_id)


async def test_closing_a_class_closes_its_students_rooms_and_ends_their_visits(
    database: RecordsDatabase,
) -> None:
    """A teacher closes the class: its students' rooms are deleted on the server (their
    tutors leave with them), and no resume key of theirs opens a visit again, even once the
    class is reopened."""
    from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer
    from harness.web import csrf_from

    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for site in open_site(
            database, livekit_url=livekit.url, livekit_api_secret=DEFAULT_SECRET
        ):
            code = site.school.rivera_class.code
            async with site.client() as student, site.client() as rivera:
                joined = await student.post("/api/token", json={"code": code, "name": "Maya"})
                assert joined.status_code == 200
                assert await sign_in(rivera, "rivera") == 303
                csrf = csrf_from((await rivera.get("/teacher")).text)
                closed = await rivera.post(f"/teacher/classes/{code}/close", data={"csrf": csrf})
                assert closed.status_code == 303
                await background_done(timeout=30)
                assert joined.json()["room"] in livekit.deleted_rooms
                await rivera.post(f"/teacher/classes/{code}/open", data={"csrf": csrf})
                again = await student.post("/api/token", json={"resume": joined.json()["resume"]})
                assert again.status_code == 410
