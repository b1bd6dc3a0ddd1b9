"""The teachers' pages: sign-in and sign-out, the home page (classes, sessions, flags,
alerts), class codes made, opened and closed, one session's transcript (audited)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from agent.web import teacher_data
from agent.web.accounts import authenticate, end_sign_ins
from agent.web.classes import classes_of, create_class, end_class_visits, set_class_open
from agent.web.context import (
    FORM_EXPIRED,
    SignedIn,
    Web,
    client_key,
    csrf_ok,
    csrf_token,
    login_page,
)
from agent.web.guards import DEVICE_COOKIE, DEVICE_DAYS
from agent.web.live.ending import CLASS_CLOSED, close_with_goodbye
from agent.web.routes.live import in_background, live_feed

logger = logging.getLogger("tutor.web")

router = APIRouter(prefix="/teacher")

Csrf = Annotated[str, Form(max_length=128)]


@router.get("", response_class=HTMLResponse)
async def teacher_home(request: Request, teacher: SignedIn, web: Web) -> Response:
    store = web.store
    return web.templates.TemplateResponse(
        request,
        "teacher_home.html",
        {
            "teacher": teacher,
            "csrf": csrf_token(request),
            "classes": await classes_of(store, teacher.id),
            "sessions": await teacher_data.sessions_for(store, teacher),
            "flags": await teacher_data.flags_for(store, teacher),
            "alerts": await teacher_data.alerts_for(store, teacher),
        },
    )


@router.post("/login")
async def login(
    request: Request,
    web: Web,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf: Csrf = "",
) -> Response:
    # the form first: without its token an attempt counts for nothing
    if not csrf_ok(request, csrf):
        return login_page(request, status=403, error="The form expired. Please try again.")
    address = client_key(request)
    guard = web.sign_in_guard
    device = guard.device_of(request.cookies.get(DEVICE_COOKIE), username)
    if not guard.allowed(username, address, device):
        return login_page(request, status=429, error="Too many sign-in attempts. Wait a minute.")
    teacher = await authenticate(web.store, username, password)
    if teacher is None:
        guard.failed(username, address, device)
        logger.info("teacher sign-in refused")
        return login_page(request, error="That username and password do not match.")
    request.session.clear()  # a fresh session: nothing from before the sign-in survives
    request.session["teacher_id"] = teacher.id
    request.session["version"] = teacher.session_version
    csrf_token(request)
    logger.info("teacher signed in", extra={"teacher": teacher.username})
    answer = RedirectResponse("/teacher", status_code=303)
    # this browser's next sign-ins as this teacher are not held by others' failures
    answer.set_cookie(
        DEVICE_COOKIE,
        guard.device_cookie(teacher.username),
        max_age=DEVICE_DAYS * 86_400,
        path="/teacher",
        httponly=True,
        samesite="strict",
        secure=web.settings.web_secure_cookies is True or request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
async def logout(request: Request, teacher: SignedIn, web: Web, csrf: Csrf = "") -> Response:
    if not csrf_ok(request, csrf):
        return HTMLResponse(FORM_EXPIRED, 403)
    # a copy of the cookie kept anywhere must not outlive the sign-out
    await end_sign_ins(web.store, teacher.id)
    request.session.clear()
    logger.info("teacher signed out", extra={"teacher": teacher.username})
    return RedirectResponse("/teacher", status_code=303)


@router.post("/classes")
async def new_class(
    request: Request,
    teacher: SignedIn,
    web: Web,
    name: Annotated[str, Form(max_length=128)] = "",
    csrf: Csrf = "",
) -> Response:
    if not csrf_ok(request, csrf):
        return HTMLResponse(FORM_EXPIRED, 403)
    created = await create_class(web.store, teacher.id, name or "My class")
    logger.info("class created", extra={"teacher": teacher.username, "code": created.code})
    return RedirectResponse("/teacher#classes", status_code=303)


@router.post("/classes/{code}/{action}")
async def open_or_close_class(
    request: Request, code: str, action: str, teacher: SignedIn, web: Web, csrf: Csrf = ""
) -> Response:
    if not csrf_ok(request, csrf):
        return HTMLResponse(FORM_EXPIRED, 403)
    if action not in ("open", "close"):
        return HTMLResponse("Unknown action.", 404)
    if not await set_class_open(web.store, teacher.id, code, is_open=action == "open"):
        return HTMLResponse("You have no class with that code.", 404)
    if action == "close":
        # its students' visits end now: each tutor says goodbye and leaves, the rooms
        # close, and a token copied from a page finds no visit, and no tutor, to come
        # back to
        rooms = await end_class_visits(web.store, teacher.id, code)
        in_background(
            close_with_goodbye(
                request.app.state.livekit, live_feed(request), rooms, by=CLASS_CLOSED
            )
        )
        logger.info("class closed", extra={"teacher": teacher.username, "rooms": len(rooms)})
    return RedirectResponse("/teacher#classes", status_code=303)


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def session_page(request: Request, session_id: str, teacher: SignedIn, web: Web) -> Response:
    found = await teacher_data.transcript(web.store, teacher, session_id)
    if found is None:
        return HTMLResponse("No session of your classes has that id.", 404)
    return web.templates.TemplateResponse(
        request,
        "teacher_session.html",
        {"teacher": teacher, "csrf": csrf_token(request), "s": found},
    )
