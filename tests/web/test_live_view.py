"""The teachers' live view (issue 31): LiveKit's webhooks are believed only when the server
signed them; a class's stream shows its students join, change tutor, raise flags and leave
as the records and webhooks say so; each adult sees only what is theirs; a page that
reconnects after the web service restarted gets the state, then the changes; and a visit a
teacher ends is over for the records, the room and the student's key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent
from sqlalchemy import func, select, update

from agent.conversation.presence import VISIT_ENDED_TOPIC
from agent.records.models import FlagRecord, HandoffRecord, SessionStarted
from agent.records.schema import LiveChangeRow, PresenceRow, VisitRow
from agent.records.store import utc_now
from agent.web.classes import Join, join_class
from agent.web.routes.live import background_done
from harness.databases import RecordsDatabase
from harness.web import (
    Site,
    csrf_from,
    event_stream,
    livekit_webhook,
    open_site,
    room_event,
    serving,
    sign_in,
)

LIVE = "/teacher/classes/{code}/live/events"


@pytest.fixture
async def site(database: RecordsDatabase) -> AsyncIterator[Site]:
    async for opened in open_site(database):
        yield opened


def signed_webhook(site: Site, event: WebhookEvent, *, secret: str | None = None) -> dict:
    """`event` as the server posts it to this site (signed with `secret` instead: forged)."""
    key = site.settings.livekit_api_key
    secret = secret or site.settings.livekit_api_secret.get_secret_value()
    return livekit_webhook(key, secret, event)


async def presence_rows(site: Site) -> list[tuple[str, bool, bool]]:
    """(identity, is_tutor, still there) for every row of room presence."""
    async with site.store.engine.connect() as conn:
        rows = (await conn.execute(select(PresenceRow))).all()
    return sorted((row.identity, row.is_tutor, row.left_at is None) for row in rows)


async def changes_count(site: Site) -> int:
    async with site.store.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(LiveChangeRow))).scalar()


async def join(site: Site, name: str, *, started: bool = True, code: str = "") -> Join:
    """`name` joins Ms Rivera's class (or `code`'s); `started`: and their tutor has started
    the session."""
    code = code or site.school.rivera_class.code
    joined = await join_class(site.store, site.settings, code, name)
    if started:
        await site.store.write([SessionStarted(joined.session_id, joined.identity, joined.room)])
    return joined


async def test_a_forged_or_unsigned_webhook_is_refused_and_changes_nothing(site: Site) -> None:
    joined = await join(site, "Leo")
    event = room_event("participant_joined", joined.room, joined.identity)
    before = await changes_count(site)
    async with site.client() as outsider:
        genuine = signed_webhook(site, event)
        unsigned = await outsider.post("/api/livekit/webhook", content=genuine["content"])
        forged = await outsider.post(
            "/api/livekit/webhook",
            **signed_webhook(site, event, secret="an-attacker-secret-of-at-least-32-chars"),
        )
        altered_body = genuine["content"].replace(joined.identity, "student-someone-else")
        altered = await outsider.post(
            "/api/livekit/webhook", content=altered_body, headers=genuine["headers"]
        )
        assert [unsigned.status_code, forged.status_code, altered.status_code] == [401] * 3
        assert await presence_rows(site) == []
        assert await changes_count(site) == before

        accepted = await outsider.post("/api/livekit/webhook", **genuine)
        assert accepted.status_code == 204
        assert await presence_rows(site) == [(joined.identity, False, True)]


async def test_a_webhook_for_a_room_that_is_no_visit_is_ignored(site: Site) -> None:
    async with site.client() as server:
        event = room_event("participant_joined", "some-other-room", "someone")
        assert (await server.post("/api/livekit/webhook", **signed_webhook(site, event))).is_success
    assert await presence_rows(site) == []


async def test_a_leave_that_arrives_before_its_join_still_leaves_the_student_gone(
    site: Site,
) -> None:
    joined = await join(site, "Leo")
    join_event = room_event("participant_joined", joined.room, joined.identity)
    leave_event = room_event("participant_left", joined.room, joined.identity)
    leave_event.created_at = join_event.created_at + 3
    async with site.client() as server:
        for event in (leave_event, join_event):
            response = await server.post("/api/livekit/webhook", **signed_webhook(site, event))
            assert response.status_code == 204
    assert await presence_rows(site) == [(joined.identity, False, False)]


async def test_a_class_stream_shows_a_student_join_change_tutor_raise_a_flag_and_leave(
    site: Site,
) -> None:
    code = site.school.rivera_class.code
    async with site.client() as rivera, site.client() as server:
        assert await sign_in(rivera, "rivera") == 303
        async with event_stream(rivera, LIVE.format(code=code)) as stream:
            state = await stream.next()
            assert state.name == "state"
            assert state.data["students"] == []  # the seeded session has ended

            joined = await join(site, "Leo", started=False)
            row = (await stream.until("student")).data
            assert (row["student"], row["status"], row["tutor"]) == ("Leo", "joining", "Main tutor")

            await site.store.write([SessionStarted(joined.session_id, joined.identity, "r")])
            for who, agent in ((joined.identity, False), ("tutor-main", True)):
                event = room_event("participant_joined", joined.room, who, agent=agent)
                await server.post("/api/livekit/webhook", **signed_webhook(site, event))
            await stream.until("student", lambda r: r["status"] == "talking")

            handoff = HandoffRecord(
                joined.session_id,
                "h1",
                "orchestrator",
                "math",
                "in_session",
                "completed",
                "7x8",
                time.time(),
            )
            await site.store.write([handoff])
            row = (await stream.until("student", lambda r: r["tutor"] != "Main tutor")).data
            assert (row["tutor"], row["subjects"]) == ("Mathematics tutor", ["Mathematics tutor"])

            flag = FlagRecord(
                joined.session_id, "f9", "student", "urgent", ["self-harm"], {}, "line", "words"
            )
            await site.store.write([flag])
            raised = (await stream.until("flag")).data
            assert (raised["student"], raised["tier"], raised["categories"]) == (
                "Leo",
                "urgent",
                ["self-harm"],
            )
            assert "words" not in raised.values()  # the words only on the session page

            event = room_event("participant_left", joined.room, joined.identity)
            await server.post("/api/livekit/webhook", **signed_webhook(site, event))
            row = (await stream.until("student", lambda r: r["status"] != "talking")).data
            assert row["status"] == "reconnecting"  # back within the resume window, or gone

            gone = (
                update(VisitRow)
                .where(VisitRow.session_id == joined.session_id)
                .values(ended_at=utc_now())
            )
            await site.store.write_waiting(lambda conn: conn.execute(gone))
            left = await stream.until("left")
            assert left.data == {"session_id": joined.session_id}


async def test_a_teacher_sees_only_their_own_classes_live(site: Site) -> None:
    rivera_code = site.school.rivera_class.code
    async with site.client() as okafor, site.client() as nobody:
        assert await sign_in(okafor, "okafor") == 303
        assert (await okafor.get(f"/teacher/classes/{rivera_code}/live")).status_code == 404
        async with event_stream(okafor, LIVE.format(code=rivera_code)) as stream:
            assert (await stream.next()).name == "gone"
        joined = await join(site, "Leo")
        csrf = csrf_from((await okafor.get("/teacher")).text)
        ended = await okafor.post(
            f"/teacher/visits/{joined.session_id}/end", headers={"X-CSRF-Token": csrf}
        )
        assert ended.status_code == 404
        assert await open_visit(site, joined.session_id)

        # no cookie: a student's LiveKit token (or nothing) opens none of it
        student_token = {"Authorization": f"Bearer {joined.token}"}
        for path in (f"/teacher/classes/{rivera_code}/live", LIVE.format(code=rivera_code)):
            answer = await nobody.get(path, headers=student_token)
            assert "Leo" not in answer.text
            assert answer.status_code in (303, 401), answer.status_code
        assert (await nobody.get("/teacher/events", headers=student_token)).status_code in (
            303,
            401,
        )


async def test_new_flags_reach_the_teacher_of_the_class_and_urgent_ones_the_lead(
    site: Site,
) -> None:
    async with (
        site.client() as rivera,
        site.client() as okafor,
        site.client() as lead,
    ):
        for client, name in ((rivera, "rivera"), (okafor, "okafor"), (lead, "lead")):
            assert await sign_in(client, name) == 303
        async with (
            event_stream(rivera, "/teacher/events") as to_rivera,
            event_stream(okafor, "/teacher/events") as to_okafor,
            event_stream(lead, "/teacher/events") as to_lead,
        ):
            joined = await join(site, "Leo")
            concern = FlagRecord(joined.session_id, "c1", "student", "concern", ["x"], {}, "l", "w")
            urgent = FlagRecord(joined.session_id, "u1", "student", "urgent", ["y"], {}, "l", "w")
            await site.store.write([concern])
            assert (await to_rivera.until("flag")).data["tier"] == "concern"
            await site.store.write([urgent])
            assert (await to_rivera.until("flag")).data["tier"] == "urgent"
            assert (await to_lead.until("flag")).data["tier"] == "urgent"  # not the concern
            other = await join(site, "Ada", code=site.school.okafor_class.code)
            mine = FlagRecord(other.session_id, "o1", "student", "concern", ["z"], {}, "l", "w")
            await site.store.write([mine])
            assert (await to_okafor.until("flag")).data["student"] == "Ada"  # not Leo's


async def test_a_page_that_reconnects_after_the_web_service_restarted_gets_the_state_then_the_changes(  # noqa: E501
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        code = site.school.rivera_class.code
        async with site.client() as rivera:
            assert await sign_in(rivera, "rivera") == 303
            cookies = rivera.cookies
            async with event_stream(rivera, "/teacher/events") as flags:
                joined = await join(site, "Leo")
                first = FlagRecord(joined.session_id, "f1", "student", "concern", [], {}, "l", "w")
                await site.store.write([first])
                seen = await flags.until("flag")
        # the web service is down: a student joins, a handoff and a flag are recorded
        later = await join(site, "Ada")
        handoff = HandoffRecord(
            joined.session_id,
            "h1",
            "orchestrator",
            "history",
            "in_session",
            "completed",
            "q",
            time.time(),
        )
        second = FlagRecord(later.session_id, "f2", "student", "urgent", ["y"], {}, "l", "w")
        await site.store.write([handoff, second])
        async with (
            serving(site.settings, site.store) as url,
            httpx.AsyncClient(base_url=url, cookies=cookies, timeout=10) as again,
        ):
            async with event_stream(again, LIVE.format(code=code)) as stream:
                state = (await stream.next()).data
                rows = {row["student"]: row for row in state["students"]}
                assert set(rows) == {"Leo", "Ada"}
                assert rows["Leo"]["tutor"] == "History tutor"
                assert {f["student"] for f in state["flags"]} == {"Leo", "Ada"}
                third = FlagRecord(later.session_id, "f3", "student", "concern", [], {}, "l", "w")
                await site.store.write([third])
                assert (await stream.until("flag")).data["id"] > seen.data["id"]
            missed = {"Last-Event-ID": seen.id}
            async with event_stream(again, "/teacher/events", headers=missed) as flags:
                replayed = [(await flags.until("flag")).data["student"] for _ in range(2)]
                assert replayed == ["Ada", "Ada"]  # f2 then f3: raised while it was away


async def open_visit(site: Site, session_id: str) -> bool:
    async with site.store.engine.connect() as conn:
        query = select(VisitRow.ended_at).where(VisitRow.session_id == session_id)
        return (await conn.execute(query)).one()[0] is None


async def test_ending_a_visit_ends_it_for_the_records_the_room_and_the_students_key(
    database: RecordsDatabase,
) -> None:
    from harness.fakes.twirp import DEFAULT_SECRET, TwirpDispatchServer

    async with TwirpDispatchServer(api_secret=DEFAULT_SECRET) as livekit:
        async for site in open_site(
            database, livekit_url=livekit.url, livekit_api_secret=DEFAULT_SECRET
        ):
            code = site.school.rivera_class.code
            async with site.client() as student, site.client() as rivera:
                joined = await student.post("/api/token", json={"code": code, "name": "Leo"})
                room = joined.json()["room"]
                livekit.participants[room] = [ParticipantInfo(identity=joined.json()["identity"])]
                async with site.store.engine.connect() as conn:
                    query = select(VisitRow.session_id).where(VisitRow.room == room)
                    session_id = (await conn.execute(query)).scalar_one()
                assert await sign_in(rivera, "rivera") == 303
                csrf = csrf_from((await rivera.get("/teacher")).text)
                path = f"/teacher/visits/{session_id}/end"
                assert (await rivera.post(path, headers={"X-CSRF-Token": "x"})).status_code == 403
                assert await open_visit(site, session_id)

                ended = await rivera.post(path, headers={"X-CSRF-Token": csrf})
                assert ended.status_code == 204
                await background_done(timeout=30)
                [sent] = livekit.sent_data
                assert (sent.room, sent.topic) == (room, VISIT_ENDED_TOPIC)
                assert room in livekit.deleted_rooms
                async with site.store.engine.connect() as conn:
                    query = select(VisitRow.end_reason).where(VisitRow.session_id == session_id)
                    assert (await conn.execute(query)).scalar_one() == "teacher"
                again = await student.post("/api/token", json={"resume": joined.json()["resume"]})
                assert again.status_code == 410
                twice = await rivera.post(path, headers={"X-CSRF-Token": csrf})
                assert twice.status_code == 404
