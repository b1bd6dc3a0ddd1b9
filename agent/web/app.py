"""The web service's routes: the student page and token API, the teacher pages and API."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from livekit.api import LiveKitAPI, TokenVerifier
from prometheus_client import make_asgi_app
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from agent.config.roster import orchestrator_worker_name
from agent.config.settings import WebSettings
from agent.dispatch.client import Dispatcher, DispatchPolicy
from agent.dispatch.token import TokenRequestError
from agent.records.store import RecordsStore
from agent.web import teacher_data
from agent.web.accounts import Teacher, authenticate, end_sign_ins, teacher_by_id
from agent.web.classes import (
    JoinError,
    classes_of,
    create_class,
    join_class,
    set_class_open,
    visit_class_open,
)
from agent.web.deployment import MetricsGuard, SessionCookies
from agent.web.guards import BodyLimit, SignInGuard
from agent.web.rejoin import rejoin_visit, resume_key, session_of
from agent.web.watchdog import SummonPolicy, TutorStatus, find_visit, summon_tutor

logger = logging.getLogger("tutor.web")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
SESSION_COOKIE = "tutor_teacher"
LIVEKIT_CALL_TIMEOUT = 5.0  # livekit-api requests have no timeout of their own
SECURITY_HEADERS = {
    # the page talks to the LiveKit server (another origin: ws/wss and its HTTP validate)
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss: http: https:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=()",
}


class NotSignedIn(Exception):
    """A teacher route was asked for without a signed-in teacher."""


class TokenRequest(BaseModel):
    code: str = Field(default="", max_length=64)
    name: str = Field(default="", max_length=128)
    # the key of an earlier join of this tab: the same visit again (code and name unused)
    resume: str = Field(default="", max_length=512)


class TutorRequest(BaseModel):
    # the tutors the page lost: they stopped answering its pings
    lost: list[str] = Field(default_factory=list, max_length=4)


@dataclass
class Limits:
    """The per-client rate limits (in memory: one web process per deployment)."""

    limiter: MovingWindowRateLimiter
    token: RateLimitItem
    tutor: RateLimitItem

    def allow(self, item: RateLimitItem, *keys: str) -> bool:
        return all(self.limiter.hit(item, key) for key in keys)


async def signed_in(request: Request) -> Teacher:
    """The signed-in teacher (the dependency of every teacher route), or `NotSignedIn`."""
    teacher_id = request.session.get("teacher_id")
    version = request.session.get("version")
    if not isinstance(teacher_id, int) or not isinstance(version, int):
        raise NotSignedIn()
    teacher = await teacher_by_id(request.app.state.store, teacher_id)
    # removed, signed out (anywhere), or a new password since: the sign-in has ended
    if teacher is None or teacher.session_version != version:
        request.session.clear()
        raise NotSignedIn()
    return teacher


SignedIn = Annotated[Teacher, Depends(signed_in)]


def create_app(settings: WebSettings, store: RecordsStore | None = None) -> FastAPI:
    """The ASGI app. It opens (and closes) its own store unless one is given."""
    own_store = store is None
    store = store or RecordsStore(settings.records_url)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["tutor_title"] = teacher_data.tutor_title
    templates.env.filters["when"] = teacher_data.when
    limiter = MovingWindowRateLimiter(MemoryStorage())
    limits = Limits(
        limiter, parse(settings.web_token_rate_limit), parse(settings.web_tutor_rate_limit)
    )
    per_name = parse(settings.web_login_rate_limit)
    sign_in_guard = SignInGuard(
        limiter,
        per_name_and_address=per_name,
        # one address (a school's, behind one router) may hold many teachers
        per_address=type(per_name)(per_name.amount * 4, per_name.multiples),
    )
    public_url = settings.livekit_public_url or settings.livekit_url
    if not (STATIC / "student.js").exists():
        logger.warning(
            "the student page's script is not built: run `npm ci && npm run build` in "
            "agent/web/frontend (the Dockerfile does)"
        )

    summon_policy = SummonPolicy(
        agent_name=orchestrator_worker_name(settings),
        min_interval=timedelta(seconds=settings.web_tutor_arrival_timeout),
        max_dispatches=settings.web_tutor_max_dispatches,
    )
    verifier = TokenVerifier(
        settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.ensure_schema()
        # the server's own API (HTTP): what the watchdog reads and dispatches through
        lk = LiveKitAPI(
            settings.livekit_url,
            settings.livekit_api_key,
            settings.livekit_api_secret.get_secret_value(),
            failover=False,
        )
        app.state.livekit = lk
        app.state.dispatcher = Dispatcher(
            lk, policy=DispatchPolicy(attempt_timeout=LIVEKIT_CALL_TIMEOUT, max_attempts=2)
        )
        logger.info("web service ready", extra={"records": store.describe()})
        try:
            yield
        finally:
            await lk.aclose()
            if own_store:
                await store.aclose()

    app = FastAPI(
        title="Voice tutor", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.store = store
    secret = settings.web_session_secret
    if secret is None:
        logger.warning(
            "WEB_SESSION_SECRET is not set: a random one is used, so teachers are signed "
            "out whenever the web service restarts"
        )
    # signs the teachers' cookies and the students' resume keys (each with its own salt)
    cookie_secret = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
    resume_window = timedelta(minutes=settings.web_resume_minutes)
    app.add_middleware(BodyLimit, max_bytes=settings.web_max_body_bytes)
    app.add_middleware(
        SessionCookies,
        secure=settings.web_secure_cookies,
        secret_key=cookie_secret,
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.web_session_hours * 3600),
        same_site="strict",
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith(("/teacher", "/api/")):
            response.headers["Cache-Control"] = "no-store"
        return response

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    # counts only (re-dispatches, dispatch retries), for the school's monitoring: the TLS
    # proxy does not serve it either. A route, not a mount: /metrics itself is guarded, not
    # redirected to /metrics/
    metrics = MetricsGuard(make_asgi_app(), settings.web_metrics_token)
    app.add_route("/metrics", metrics, include_in_schema=False)

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
        return templates.TemplateResponse(
            request,
            "teacher_login.html",
            {"csrf": csrf_token(request), "error": error},
            status_code=status,
        )

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "sign in as a teacher first"}, status_code=401)
        return login_page(request)

    @app.exception_handler(SQLAlchemyError)
    async def store_down(request: Request, exc: SQLAlchemyError) -> Response:
        logger.error("records store error: %s", type(exc).__name__)
        logger.debug("records store error detail", exc_info=exc)
        message = "The school's records are not reachable right now. Please try again soon."
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=503)
        return HTMLResponse(message, status_code=503)

    # the student's side

    @app.get("/", response_class=HTMLResponse)
    async def student_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "student.html", {})

    def too_many() -> Response:
        return JSONResponse(
            {"error": "Too many tries. Please wait a minute, then try again."},
            status_code=429,
            headers={"Retry-After": "60"},
        )

    @app.post("/api/token")
    async def token(request: Request) -> Response:
        # the limit before the body is read: a flood costs no parsing
        if not limits.allow(limits.token, client_key(request)):
            return too_many()
        try:
            body = TokenRequest.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse(
                {"error": "Please type your class code and your first name."}, status_code=422
            )
        try:
            if body.resume:
                session = session_of(cookie_secret, body.resume, resume_window)
                joined = await rejoin_visit(store, settings, session)
            else:
                joined = await join_class(store, settings, body.code, body.name)
        except JoinError as e:
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
                "url": public_url,
                "room": joined.room,
                "identity": joined.identity,
                "tutor_timeout_s": settings.web_tutor_arrival_timeout,
                "resume": resume_key(cookie_secret, joined.session_id),
            }
        )

    @app.post("/api/tutor")
    async def tutor(request: Request, authorization: Annotated[str, Header()] = "") -> Response:
        """The student's page, with its token, when no tutor has joined yet, or when its
        tutor stopped answering (`{"lost": [identity, ...]}`)."""
        scheme, _, token = authorization.partition(" ")
        try:
            claims = verifier.verify(token) if scheme.lower() == "bearer" else None
        except Exception:
            claims = None
        room = claims.video.room if claims and claims.video else ""
        if claims is None or not room:
            return JSONResponse({"error": "a student's token is needed"}, status_code=401)
        if not limits.allow(limits.tutor, f"tutor:{claims.identity}", client_key(request)):
            return too_many()
        raw = await request.body()
        try:
            lost = TutorRequest.model_validate_json(raw).lost if raw.strip() else []
        except ValidationError:
            return JSONResponse({"error": 'expected {"lost": [identity, ...]}'}, 422)
        visit = await find_visit(store, room, claims.identity)
        if visit is None:
            return JSONResponse({"error": "no visit for this token"}, status_code=404)
        if not await visit_class_open(store, visit.session_id):
            return JSONResponse(
                {"error": "This class is closed. Ask your teacher.", "reason": "closed"},
                status_code=403,
            )
        lk: LiveKitAPI = request.app.state.livekit
        try:
            async with asyncio.timeout(LIVEKIT_CALL_TIMEOUT * 3):
                status = await summon_tutor(
                    lk, request.app.state.dispatcher, store, visit, summon_policy, lost=lost
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

    @app.get("/healthz")
    async def healthz() -> Response:
        await store.ensure_schema()
        return JSONResponse({"ok": True})

    # the adults' side: pages

    @app.get("/teacher", response_class=HTMLResponse)
    async def teacher_home(request: Request, teacher: SignedIn) -> Response:
        return templates.TemplateResponse(
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

    @app.post("/teacher/login")
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=256)] = "",
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        # the form first: without its token an attempt counts for nothing
        if not csrf_ok(request, csrf):
            return login_page(request, status=403, error="The form expired. Please try again.")
        address = client_key(request)
        if not sign_in_guard.allowed(username, address):
            return login_page(
                request, status=429, error="Too many sign-in attempts. Wait a minute."
            )
        teacher = await authenticate(store, username, password)
        if teacher is None:
            sign_in_guard.failed(username, address)
            logger.info("teacher sign-in refused")
            return login_page(request, error="That username and password do not match.")
        request.session.clear()  # a fresh session: nothing from before the sign-in survives
        request.session["teacher_id"] = teacher.id
        request.session["version"] = teacher.session_version
        csrf_token(request)
        logger.info("teacher signed in", extra={"teacher": teacher.username})
        return RedirectResponse("/teacher", status_code=303)

    @app.post("/teacher/logout")
    async def logout(
        request: Request, teacher: SignedIn, csrf: Annotated[str, Form(max_length=128)] = ""
    ) -> Response:
        if not csrf_ok(request, csrf):
            return HTMLResponse("The form expired. Please go back and try again.", 403)
        # a copy of the cookie kept anywhere must not outlive the sign-out
        await end_sign_ins(store, teacher.id)
        request.session.clear()
        logger.info("teacher signed out", extra={"teacher": teacher.username})
        return RedirectResponse("/teacher", status_code=303)

    @app.post("/teacher/classes")
    async def new_class(
        request: Request,
        teacher: SignedIn,
        name: Annotated[str, Form(max_length=128)] = "",
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        if not csrf_ok(request, csrf):
            return HTMLResponse("The form expired. Please go back and try again.", 403)
        created = await create_class(store, teacher.id, name or "My class")
        logger.info("class created", extra={"teacher": teacher.username, "code": created.code})
        return RedirectResponse("/teacher#classes", status_code=303)

    @app.post("/teacher/classes/{code}/{action}")
    async def open_or_close_class(
        request: Request,
        code: str,
        action: str,
        teacher: SignedIn,
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        if not csrf_ok(request, csrf):
            return HTMLResponse("The form expired. Please go back and try again.", 403)
        if action not in ("open", "close"):
            return HTMLResponse("Unknown action.", 404)
        if not await set_class_open(store, teacher.id, code, is_open=action == "open"):
            return HTMLResponse("You have no class with that code.", 404)
        return RedirectResponse("/teacher#classes", status_code=303)

    @app.get("/teacher/sessions/{session_id}", response_class=HTMLResponse)
    async def session_page(request: Request, session_id: str, teacher: SignedIn) -> Response:
        found = await teacher_data.transcript(store, teacher, session_id)
        if found is None:
            return HTMLResponse("No session of your classes has that id.", 404)
        return templates.TemplateResponse(
            request,
            "teacher_session.html",
            {"teacher": teacher, "csrf": csrf_token(request), "s": found},
        )

    # the adults' side: JSON

    @app.get("/api/teacher/me")
    async def api_me(teacher: SignedIn) -> dict[str, Any]:
        return {"username": teacher.username, "name": teacher.display_name, "role": teacher.role}

    @app.get("/api/teacher/classes")
    async def api_classes(teacher: SignedIn) -> list[dict[str, Any]]:
        return [
            {
                "code": c.code,
                "name": c.name,
                "open": c.is_open,
                "created_at": c.created_at,
                "closed_at": c.closed_at,
            }
            for c in await classes_of(store, teacher.id)
        ]

    @app.get("/api/teacher/sessions")
    async def api_sessions(teacher: SignedIn) -> list[dict[str, Any]]:
        return [
            {
                "id": s.session_id,
                "student": s.student,
                "class_code": s.class_code,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "length_s": s.length_s,
                "tutor_joined": s.tutor_joined,
                "gave_up": s.gave_up,
                "subjects": s.subjects,
                "flags": s.flags,
                "urgent_flags": s.urgent_flags,
            }
            for s in await teacher_data.sessions_for(store, teacher)
        ]

    @app.get("/api/teacher/sessions/{session_id}")
    async def api_session(session_id: str, teacher: SignedIn) -> Response:
        found = await teacher_data.transcript(store, teacher, session_id)
        if found is None:
            return JSONResponse({"error": "no session of your classes has that id"}, 404)
        return JSONResponse(found)

    @app.get("/api/teacher/flags")
    async def api_flags(teacher: SignedIn) -> list[dict[str, Any]]:
        return [vars(flag) for flag in await teacher_data.flags_for(store, teacher)]

    @app.get("/api/teacher/alerts")
    async def api_alerts(teacher: SignedIn) -> list[dict[str, Any]]:
        return await teacher_data.alerts_for(store, teacher)

    return app
