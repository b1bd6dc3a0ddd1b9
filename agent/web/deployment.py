"""The web service as deployed behind a proxy: whose forwarded headers uvicorn believes, when
the session cookie is `Secure`, and who may read `/metrics`.

- `server_options`: uvicorn believes `X-Forwarded-For` / `-Proto` from `WEB_TRUSTED_PROXIES`
  only, so a client reaching the port directly cannot choose its own rate-limit key.
- `SessionCookies`: Starlette's signed session cookie, marked `Secure` whenever the request
  came over HTTPS (`WEB_SECURE_COOKIES=auto`, the default), always (`true`) or never
  (`false`).
- `MetricsGuard`: `/metrics` with `WEB_METRICS_TOKEN` set needs `Authorization: Bearer
  <token>` (401 otherwise); unset, it answers a client on this machine only and anyone else
  exactly as a path that does not exist (404).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Literal

from pydantic import SecretStr
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.config.settings import WebSettings

SECURE_SCHEMES = ("https", "wss")
NOT_FOUND = {"detail": "Not Found"}  # what the app answers for any path it does not have
UNAUTHORIZED = {"error": "metrics need Authorization: Bearer <WEB_METRICS_TOKEN>"}


def server_options(settings: WebSettings) -> dict[str, Any]:
    """uvicorn's proxy options for the service (`uvicorn.run(app, **server_options(...))`)."""
    return {"proxy_headers": True, "forwarded_allow_ips": settings.web_trusted_proxies}


class SessionCookies:
    """ASGI middleware: `SessionMiddleware` (same cookie, same keyword arguments) with its
    `https_only` chosen per request from the scheme uvicorn settled on: a trusted proxy's
    `X-Forwarded-Proto`, or the connection's own."""

    def __init__(self, app: ASGIApp, *, secure: bool | Literal["auto"], **session: Any) -> None:
        self.plain = SessionMiddleware(app, https_only=secure is True, **session)
        self.https = SessionMiddleware(app, https_only=secure is not False, **session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.https if scope.get("scheme") in SECURE_SCHEMES else self.plain
        await chosen(scope, receive, send)


class MetricsGuard:
    """ASGI app (an HTTP route's): `app`, the Prometheus exporter, for the school's
    monitoring only."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token.get_secret_value().encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        if self.token is None:
            if is_loopback(scope.get("client")):
                return None
            return JSONResponse(NOT_FOUND, status_code=404)
        given = bearer_token(scope)
        if given is not None and hmac.compare_digest(given, self.token):
            return None
        return JSONResponse(
            UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )


def bearer_token(scope: Scope) -> bytes | None:
    """The credentials of the request's `Authorization: Bearer ...` header, if it has one."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


def is_loopback(client: tuple[str, int] | None) -> bool:
    """Whether the client (as uvicorn reports it, after a trusted proxy's
    `X-Forwarded-For`) is this machine."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:  # a unix socket's peer, or a proxy's name for it
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
