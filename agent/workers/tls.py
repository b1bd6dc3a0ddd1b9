"""One TLS context per process for every model client, built before any job exists.

Each `openai` client otherwise parses the system's CA bundle into a context of its own: a
pipeline worker's job process builds a dozen (an LLM and a voice per tutor, STT,
moderation), and when a class arrives the warm pool refills while the first sessions start,
so on the real server this parsing took ~15% of a busy core just when the greetings were
due (`bench capacity --real-server`, profiled with py-spy). The context is built by the
same function the clients would use (`httpcore2.default_ssl_context`: `SSL_CERT_FILE`,
`SSL_CERT_DIR`, the system store), once, in the worker's forkserver (this module is one of
its preloads), so every job process inherits it; an `SSLContext` is safe to share.
"""

from __future__ import annotations

import functools
import ssl

import httpcore2
import openai as openai_sdk

from agent.framework import build_aiohttp_tls


@functools.cache
def shared_tls() -> ssl.SSLContext:
    return httpcore2.default_ssl_context()


def model_http_client(**options: object) -> openai_sdk.DefaultAsyncHttpxClient:
    """An HTTP client for an `openai` client, on the shared TLS context (`options` override
    the SDK's defaults: timeout, limits)."""
    return openai_sdk.DefaultAsyncHttpxClient(verify=shared_tls(), **options)


def build_contexts() -> None:
    """Both contexts a job uses: the model clients' and the framework's own aiohttp one (the
    realtime websocket's), which the framework caches per process."""
    shared_tls()
    build_aiohttp_tls()


build_contexts()  # at import: in the forkserver, before any job process is forked
