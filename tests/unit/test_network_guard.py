"""The test suite itself cannot reach beyond loopback."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NonLoopbackConnectionError


def test_non_loopback_connection_fails() -> None:
    with socket.socket() as sock, pytest.raises(NonLoopbackConnectionError):
        sock.connect(("203.0.113.7", 443))


def test_non_loopback_name_resolution_fails() -> None:
    with pytest.raises(NonLoopbackConnectionError):
        socket.getaddrinfo("api.openai.com", 443)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
