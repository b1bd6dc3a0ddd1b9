"""The web service's app: its shared parts (`WebContext`), middleware, error pages, static
files and metrics, and one router per audience (`agent.web.routes`)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from livekit.api import LiveKitAPI, TokenVerifier
from prometheus_client import make_asgi_app
from sqlalchemy.exc import SQLAlchemyError

from agent.config.roster import orchestrator_worker_name
from agent.config.settings import WebSettings
from agent.dispatch.client import Dispatcher, DispatchPolicy
from agent.records.store import RecordsStore
from agent.web import teacher_data
from agent.web.context import (
    HERE,
    LIVEKIT_CALL_TIMEOUT,
    STATIC,
    Limits,
    NotSignedIn,
    WebContext,
    login_page,
)
from agent.web.deployment import MetricsGuard, SessionCookies
from agent.web.guards import BodyLimit, SignInGuard
from agent.web.live.ending import GOODBYE_TIMEOUT
from agent.web.live.feed import LiveFeed
from agent.web.routes import live, student, teacher_api, teacher_pages
from agent.web.watchdog import SummonPolicy

logger = logging.getLogger("tutor.web")

SESSION_COOKIE = "tutor_teacher"
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


def web_context(settings: WebSettings, store: RecordsStore) -> WebContext:
    """The parts every route shares, built from the settings."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["tutor_title"] = teacher_data.tutor_title
    templates.env.filters["when"] = teacher_data.when
    templates.env.filters["local"] = teacher_data.local_time
    limiter = MovingWindowRateLimiter(MemoryStorage())
    per_name = parse(settings.web_login_rate_limit)
    secret = settings.web_session_secret
    if secret is None:
        logger.warning(
            "WEB_SESSION_SECRET is not set: a random one is used, so teachers are signed "
            "out whenever the web service restarts"
        )
    # signs the teachers' cookies, the students' resume keys and the sign-in devices (each
    # with its own salt)
    cookie_secret = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
    return WebContext(
        settings=settings,
        store=store,
        templates=templates,
        limits=Limits(
            limiter, parse(settings.web_token_rate_limit), parse(settings.web_tutor_rate_limit)
        ),
        sign_in_guard=SignInGuard(
            limiter,
            per_name_and_address=per_name,
            # one address (a school's, behind one router) may hold many teachers
            per_address=type(per_name)(per_name.amount * 4, per_name.multiples),
            secret=cookie_secret,
        ),
        summon_policy=SummonPolicy(
            agent_name=orchestrator_worker_name(settings),
            min_interval=timedelta(seconds=settings.web_tutor_arrival_timeout),
            max_dispatches=settings.web_tutor_max_dispatches,
        ),
        verifier=TokenVerifier(
            settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
        ),
        cookie_secret=cookie_secret,
        resume_window=timedelta(minutes=settings.web_resume_minutes),
        public_url=settings.livekit_public_url or settings.livekit_url,
    )


def create_app(settings: WebSettings, store: RecordsStore | None = None) -> FastAPI:
    """The ASGI app. It opens (and closes) its own store unless one is given."""
    own_store = store is None
    store = store or RecordsStore(settings.records_url)
    if not (STATIC / "student.js").exists():
        logger.warning(
            "the student page's script is not built: run `npm ci && npm run build` in "
            "agent/web/frontend (the Dockerfile does)"
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
        feed = app.state.live_feed = LiveFeed(store)
        await feed.start()
        logger.info("web service ready", extra={"records": store.describe()})
        try:
            yield
        finally:
            # a class closed just before: its rooms still close
            await live.background_done(timeout=GOODBYE_TIMEOUT + 2 * LIVEKIT_CALL_TIMEOUT)
            await feed.aclose()
            await lk.aclose()
            if own_store:
                await store.aclose()

    app = FastAPI(
        title="Voice tutor",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # no "/teacher/" -> "/teacher" redirect: it would be built from the request's Host
        # header, a redirect anyone can point at a site of theirs
        redirect_slashes=False,
    )
    web = app.state.web = web_context(settings, store)
    app.state.store = store
    app.add_middleware(BodyLimit, max_bytes=settings.web_max_body_bytes)
    app.add_middleware(
        SessionCookies,
        secure=settings.web_secure_cookies,
        secret_key=web.cookie_secret,
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

    for routes in (student, teacher_pages, teacher_api, live):
        app.include_router(routes.router)
    return app
