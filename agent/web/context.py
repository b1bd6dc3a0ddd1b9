"""What every route of the web service shares: the settings, the records store, the page
templates and the limits, built once by `create_app`; the signed-in teacher; the forms'
CSRF token; the answers several routes give."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from limits import RateLimitItem
from limits.strategies import MovingWindowRateLimiter
from livekit.api import TokenVerifier

from agent.config.settings import WebSettings
from agent.records.store import RecordsStore
from agent.web.accounts import Teacher, teacher_by_id
from agent.web.guards import SignInGuard
from agent.web.watchdog import SummonPolicy

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LIVEKIT_CALL_TIMEOUT = 5.0  # livekit-api requests have no timeout of their own
FORM_EXPIRED = "The form expired. Please go back and try again."


class NotSignedIn(Exception):
    """A teacher route was asked for without a signed-in teacher."""


@dataclass
class Limits:
    """The per-client rate limits (in memory: one web process per deployment)."""

    limiter: MovingWindowRateLimiter
    token: RateLimitItem
    tutor: RateLimitItem

    def allow(self, item: RateLimitItem, *keys: str) -> bool:
        return all(self.limiter.hit(item, key) for key in keys)

    def within(self, item: RateLimitItem, key: str) -> bool:
        """Whether `key` has budget left, without spending any (see `spend`)."""
        return self.limiter.test(item, key)

    def spend(self, item: RateLimitItem, key: str) -> None:
        self.limiter.hit(item, key)


@dataclass
class WebContext:
    """The web service's shared parts (one per app, on `app.state.web`)."""

    settings: WebSettings
    store: RecordsStore
    templates: Jinja2Templates
    limits: Limits
    sign_in_guard: SignInGuard
    summon_policy: SummonPolicy
    verifier: TokenVerifier  # checks a student's LiveKit token
    cookie_secret: str  # signs the teachers' cookies and the students' resume keys
    resume_window: timedelta
    public_url: str  # the LiveKit URL the student's page connects to


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


Web = Annotated[WebContext, Depends(web_context)]


async def signed_in(request: Request) -> Teacher:
    """The signed-in teacher (the dependency of every teacher route), or `NotSignedIn`."""
    teacher_id = request.session.get("teacher_id")
    version = request.session.get("version")
    if not isinstance(teacher_id, int) or not isinstance(version, int):
        raise NotSignedIn()
    teacher = await teacher_by_id(web_context(request).store, teacher_id)
    # removed, signed out (anywhere), or a new password since: the sign-in has ended
    if teacher is None or teacher.session_version != version:
        request.session.clear()
        raise NotSignedIn()
    return teacher


SignedIn = Annotated[Teacher, Depends(signed_in)]


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: str) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and secrets.compare_digest(expected, submitted)


def login_page(request: Request, *, status: int = 401, error: str = "") -> HTMLResponse:
    return web_context(request).templates.TemplateResponse(
        request,
        "teacher_login.html",
        {"csrf": csrf_token(request), "error": error},
        status_code=status,
    )


def too_many() -> Response:
    return JSONResponse(
        {"error": "Too many tries. Please wait a minute, then try again."},
        status_code=429,
        headers={"Retry-After": "60"},
    )
