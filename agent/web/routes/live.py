"""The teachers' live view: a class's live page and its event stream, the home page's
stream of new flags, ending a visit from the page, and LiveKit's webhooks (the rooms'
joins and leaves) that feed them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from agent.records.store import utc_now
from agent.web.classes import normalize_code
from agent.web.context import FORM_EXPIRED, SignedIn, Web, csrf_ok, csrf_token
from agent.web.live import board
from agent.web.live.ending import BY_TEACHER, close_with_goodbye, end_visit_by_teacher
from agent.web.live.feed import LiveFeed
from agent.web.live.presence import WebhookRefused, note_event, verified_event

logger = logging.getLogger("tutor.web")

router = APIRouter()

# a page looks again at least this often with no change (a lost student's time to come
# back runs out by the clock, not by a record)
REFRESH_SECONDS = 5.0
RECENT_FLAGS = timedelta(hours=12)

_background: set[asyncio.Task[None]] = set()


def live_feed(request: Request) -> LiveFeed:
    feed: LiveFeed = request.app.state.live_feed
    return feed


@router.get("/teacher/classes/{code}/live", response_class=HTMLResponse)
async def live_page(request: Request, code: str, teacher: SignedIn, web: Web) -> Response:
    code = normalize_code(code)
    if await board.class_id_of(web.store, teacher, code) is None:
        return HTMLResponse("You have no class with that code.", 404)
    return web.templates.TemplateResponse(
        request,
        "teacher_live.html",
        {"teacher": teacher, "csrf": csrf_token(request), "code": code},
    )


@router.get("/teacher/classes/{code}/live/events", response_class=EventSourceResponse)
async def live_events(
    request: Request, code: str, teacher: SignedIn, web: Web
) -> AsyncIterator[ServerSentEvent]:
    """The class now (`state`), then each change: a student's row (`student`), a student
    gone (`left`), a new flag (`flag`). A page that reconnects gets the state again."""
    class_id = await board.class_id_of(web.store, teacher, normalize_code(code))
    if class_id is None:
        yield ServerSentEvent(event="gone", data={"error": "You have no class with that code."})
        return
    feed = live_feed(request)
    window = web.resume_window
    with feed.watch(frozenset({class_id})) as watch:
        students = {
            s.session_id: s
            for s in await board.class_board(web.store, class_id, resume_window=window)
        }
        flags = await board.flags_raised(
            web.store, teacher, class_ids=[class_id], since=utc_now() - RECENT_FLAGS
        )
        last_flag = max((f.id for f in flags), default=await board.newest_flag(web.store))
        yield ServerSentEvent(
            event="state",
            data={
                "students": [s.as_json() for s in students.values()],
                "flags": [f.as_json() for f in flags],
            },
        )
        while True:
            await watch.next_change(REFRESH_SECONDS)
            now = {
                s.session_id: s
                for s in await board.class_board(web.store, class_id, resume_window=window)
            }
            for session_id in students.keys() - now.keys():
                yield ServerSentEvent(event="left", data={"session_id": session_id})
            for session_id, student in now.items():
                if students.get(session_id) != student:
                    yield ServerSentEvent(event="student", data=student.as_json())
            students = now
            for flag in reversed(
                await board.flags_raised(web.store, teacher, class_ids=[class_id], after=last_flag)
            ):
                last_flag = max(last_flag, flag.id)
                yield ServerSentEvent(event="flag", data=flag.as_json())


@router.get("/teacher/events", response_class=EventSourceResponse)
async def teacher_events(
    request: Request,
    teacher: SignedIn,
    web: Web,
    last_event_id: Annotated[str, Header()] = "",
) -> AsyncIterator[ServerSentEvent]:
    """New flags this adult may see (their classes'; a safeguarding lead's, every urgent
    one of the school), each with its row id as the event id: a page that reconnects
    (`Last-Event-ID`) gets every flag raised meanwhile."""
    after = int(last_event_id) if last_event_id.isdigit() else await board.newest_flag(web.store)
    yield ServerSentEvent(comment="watching")
    with live_feed(request).watch(None) as watch:
        while True:
            for flag in reversed(await board.flags_raised(web.store, teacher, after=after)):
                after = max(after, flag.id)
                yield ServerSentEvent(event="flag", id=str(flag.id), data=flag.as_json())
            await watch.next_change(REFRESH_SECONDS)


@router.post("/teacher/visits/{session_id}/end")
async def end_visit(
    request: Request,
    session_id: str,
    teacher: SignedIn,
    web: Web,
    csrf: Annotated[str, Form(max_length=128)] = "",
    x_csrf_token: Annotated[str, Header()] = "",
) -> Response:
    """End a student's visit from the live page: the page says so, the tutor says goodbye
    and leaves, the room and its dispatches go."""
    if not csrf_ok(request, csrf or x_csrf_token):
        return HTMLResponse(FORM_EXPIRED, 403)
    room = await end_visit_by_teacher(web.store, teacher.id, session_id)
    if room is None:
        return JSONResponse({"error": "no open visit of your classes has that id"}, 404)
    logger.info("visit ended by teacher", extra={"teacher": teacher.username, "room": room})
    in_background(
        close_with_goodbye(request.app.state.livekit, live_feed(request), [room], by=BY_TEACHER)
    )
    if x_csrf_token:
        return Response(status_code=204)
    return RedirectResponse("/teacher", status_code=303)


@router.post("/api/livekit/webhook")
async def livekit_webhook(
    request: Request, web: Web, authorization: Annotated[str, Header()] = ""
) -> Response:
    """LiveKit's webhooks (`livekit.yaml` `webhook:`): joins, leaves, rooms finished."""
    try:
        event = verified_event(web.verifier, await request.body(), authorization)
    except WebhookRefused as refused:
        logger.warning("webhook refused: %s", refused)
        return JSONResponse({"error": "not signed by the LiveKit server"}, 401)
    await note_event(web.store, event)
    return Response(status_code=204)


def in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` after the answer, keeping a reference until it is done."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def background_done(timeout: float) -> None:
    """Until the work started after answers is done (rooms closed), or `timeout` seconds:
    at shutdown, and in tests."""
    if _background:
        await asyncio.wait(set(_background), timeout=timeout)
