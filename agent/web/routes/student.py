"""The student's side: the page, a token for a class code (or a rejoin), and the page's
call for a tutor when none has come or its tutor stopped answering."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from livekit.api import LiveKitAPI
from pydantic import BaseModel, Field, ValidationError

from agent.dispatch.token import TokenRequestError
from agent.web.classes import CODE_UNKNOWN, JoinError, join_class, visit_class_open
from agent.web.context import LIVEKIT_CALL_TIMEOUT, Web, client_key, too_many
from agent.web.rejoin import EXPIRED, end_visit, key_of, rejoin_visit, resume_key
from agent.web.watchdog import TutorStatus, find_visit, summon_tutor

logger = logging.getLogger("tutor.web")

router = APIRouter()


class TokenRequest(BaseModel):
    code: str = Field(default="", max_length=64)
    name: str = Field(default="", max_length=128)
    # the key of an earlier join of this tab: the same visit again (code and name unused)
    resume: str = Field(default="", max_length=512)


class TutorRequest(BaseModel):
    # the tutors the page lost: they stopped answering its pings
    lost: list[str] = Field(default_factory=list, max_length=4)


@router.get("/", response_class=HTMLResponse)
async def student_page(request: Request, web: Web) -> Response:
    return web.templates.TemplateResponse(request, "student.html", {})


def not_json(request: Request) -> Response | None:
    """A 415 for a body that does not say it is JSON: a form or text a page on another site
    can post without asking the browser first is neither read nor counted."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/json":
        return None
    return JSONResponse({"error": "send application/json"}, status_code=415)


@router.post("/api/token")
async def token(request: Request, web: Web) -> Response:
    """A student's token: a first join (`code`, `name`) or a rejoin (`resume`).

    Only guesses are counted against the client's address: a wrong class code. Once an
    address has made `WEB_TOKEN_RATE_LIMIT` of them, no code is tried from it until the
    window has passed. Malformed bodies, names and closed classes cost nothing, so a class
    behind one address joins whatever else comes from it. A rejoin counts against its own
    visit (its key is signed: there is nothing to guess)."""
    if (refused := not_json(request)) is not None:
        return refused
    try:
        body = TokenRequest.model_validate_json(await request.body())
    except ValidationError:
        return JSONResponse(
            {"error": "Please type your class code and your first name."}, status_code=422
        )
    guesses = f"code-guesses:{client_key(request)}"
    try:
        if body.resume:
            key = key_of(web.cookie_secret, body.resume, web.resume_window)
            if not web.limits.allow(web.limits.token, f"rejoins:{key.session_id}"):
                return too_many()
            joined = await rejoin_visit(web.store, web.settings, key)
        else:
            if not web.limits.within(web.limits.token, guesses):
                return too_many()
            joined = await join_class(web.store, web.settings, body.code, body.name)
    except JoinError as e:
        if e.code == CODE_UNKNOWN:
            web.limits.spend(web.limits.token, guesses)
        return JSONResponse({"error": e.message, "reason": e.code}, status_code=e.status)
    except TokenRequestError:
        logger.exception("a student token could not be made")
        return JSONResponse({"error": "Something went wrong. Please try again."}, 500)
    logger.info(
        "student rejoined" if body.resume else "student joined",
        extra={"room": joined.room, "session": joined.session_id},
    )
    return JSONResponse(
        {
            "token": joined.token,
            "url": web.public_url,
            "room": joined.room,
            "identity": joined.identity,
            "tutor_timeout_s": web.settings.web_tutor_arrival_timeout,
            "resume": resume_key(web.cookie_secret, joined.session_id, joined.resume_generation),
        }
    )


class LeaveRequest(BaseModel):
    resume: str = Field(max_length=512)


@router.post("/api/leave")
async def leave(request: Request, web: Web) -> Response:
    """The student pressed Leave: the visit is over, and its resume key opens nothing."""
    if (refused := not_json(request)) is not None:
        return refused
    try:
        body = LeaveRequest.model_validate_json(await request.body())
        key = key_of(web.cookie_secret, body.resume, web.resume_window)
    except (ValidationError, JoinError):
        return JSONResponse({"error": EXPIRED.message, "reason": EXPIRED.code}, 410)
    if not await end_visit(web.store, key):
        return JSONResponse({"error": EXPIRED.message, "reason": EXPIRED.code}, 410)
    logger.info("student left", extra={"session": key.session_id})
    return Response(status_code=204)


@router.post("/api/tutor")
async def tutor(
    request: Request, web: Web, authorization: Annotated[str, Header()] = ""
) -> Response:
    """The student's page, with its token, when no tutor has joined yet, or when its
    tutor stopped answering (`{"lost": [identity, ...]}`)."""
    scheme, _, bearer = authorization.partition(" ")
    try:
        claims = web.verifier.verify(bearer) if scheme.lower() == "bearer" else None
    except Exception:
        claims = None
    room = claims.video.room if claims and claims.video else ""
    if claims is None or not room:
        return JSONResponse({"error": "a student's token is needed"}, status_code=401)
    if (refused := not_json(request)) is not None:
        return refused
    # counted per student: a class behind one school address asks as many times as it has
    # students (the token, not the address, is who asks)
    if not web.limits.allow(web.limits.tutor, f"tutor:{claims.identity}"):
        return too_many()
    raw = await request.body()
    try:
        lost = TutorRequest.model_validate_json(raw).lost if raw.strip() else []
    except ValidationError:
        return JSONResponse({"error": 'expected {"lost": [identity, ...]}'}, 422)
    visit = await find_visit(web.store, room, claims.identity)
    if visit is None:
        return JSONResponse({"error": "no visit for this token"}, status_code=404)
    if not await visit_class_open(web.store, visit.session_id):
        return JSONResponse(
            {"error": "This class is closed. Ask your teacher.", "reason": "closed"},
            status_code=403,
        )
    lk: LiveKitAPI = request.app.state.livekit
    try:
        async with asyncio.timeout(LIVEKIT_CALL_TIMEOUT * 3):
            status = await summon_tutor(
                lk, request.app.state.dispatcher, web.store, visit, web.summon_policy, lost=lost
            )
    except Exception as e:  # the LiveKit server is unreachable or refused: ask later
        logger.warning("tutor check failed: %s", type(e).__name__)
        return JSONResponse({"status": "unknown"}, status_code=503)
    if status is TutorStatus.GAVE_UP:
        message = (
            "All our tutors are busy right now. Please press Leave and try again in a "
            "few minutes, or tell your teacher."
        )
    elif status is TutorStatus.PRESENT:
        message = ""
    else:
        message = "Your tutor is on the way…"
    return JSONResponse({"status": status.value, "message": message})


@router.get("/healthz")
async def healthz(web: Web) -> Response:
    await web.store.ensure_schema()
    return JSONResponse({"ok": True})
