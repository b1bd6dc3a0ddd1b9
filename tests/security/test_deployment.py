"""The deployment (issue 21, item 6): the compose stack keeps the web port on the machine and
believes only its own TLS proxy, the proxy sends HSTS, /metrics is for the school's
monitoring only, and the sign-in cookie is `Secure` whenever the page came over HTTPS. Each
attack is replayed (against the real app served by uvicorn where there is one) and refused."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.config.settings import SettingsError, WebSettings, load_settings
from harness import REPO
from harness.databases import RecordsDatabase
from harness.web import PASSWORD, Site, csrf_from, open_site, unused_port

METRICS_TOKEN = "a-metrics-token-of-some-length-0001"
STUDENTS = [f"203.0.113.{n}" for n in range(1, 6)]  # addresses beyond the school's proxy
ONE_YEAR = 365 * 24 * 3600


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with its `${VAR:-default}` filled in from `env`, as compose does."""

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2) or ""
        return (env or {}).get(name, default)

    text = (REPO / "docker-compose.yml").read_text()
    return yaml.safe_load(re.sub(r"\$\{(\w+)(?::[-?]([^}]*))?\}", fill, text))


def published_host(port: str | dict[str, Any]) -> str:
    """The host address a compose port mapping publishes on ("" for every interface)."""
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else ""


def tls_proxy_address(stack: dict[str, Any]) -> str:
    return stack["services"]["proxy"]["networks"]["default"]["ipv4_address"]


@pytest.mark.parametrize(
    "env",
    [{}, {"TUTOR_SUBNET": "10.77.3"}, {"WEB_TRUSTED_PROXIES": "*"}],
    ids=["defaults", "another-subnet", "star-in-env"],
)
def test_compose_keeps_the_web_port_on_this_machine_and_believes_only_its_tls_proxy(
    env: dict[str, str],
) -> None:
    stack = compose(env)
    web, proxy = stack["services"]["web"], stack["services"]["proxy"]
    hosts = [published_host(port) for port in web["ports"]]
    assert hosts and all(host and ipaddress.ip_address(host).is_loopback for host in hosts)

    assert "profiles" not in web and proxy["profiles"] == ["tls"]
    address = ipaddress.ip_address(tls_proxy_address(stack))
    trusted = web["environment"]["WEB_TRUSTED_PROXIES"]
    assert [ipaddress.ip_address(entry.strip()) for entry in trusted.split(",")] == [address]

    # the proxy really holds that address on the web service's network, and no other
    # container can be handed it
    assert "networks" not in web  # the default network, as the proxy's
    (pool,) = stack["networks"]["default"]["ipam"]["config"]
    assert address in ipaddress.ip_network(pool["subnet"])
    assert address not in ipaddress.ip_network(pool["ip_range"])
    assert address != ipaddress.ip_address(pool["gateway"])


async def test_a_client_reaching_the_web_port_directly_cannot_choose_its_rate_limit_key(
    database: RecordsDatabase,
) -> None:
    # the web service as compose runs it: the client is not its TLS proxy
    trusted = compose()["services"]["web"]["environment"]["WEB_TRUSTED_PROXIES"]
    async for site in open_site(
        database, web_token_rate_limit="3/minute", web_trusted_proxies=trusted
    ):
        async with site.client() as attacker:
            answers = [
                await bad_token_request(attacker, {"X-Forwarded-For": student})
                for student in STUDENTS
            ]
        assert answers == [404, 404, 404, 429, 429]


async def test_students_behind_the_trusted_proxy_each_keep_their_own_rate_limit_key(
    database: RecordsDatabase,
) -> None:
    # the tests' loopback client stands for the TLS proxy here
    async for site in open_site(
        database, web_token_rate_limit="3/minute", web_trusted_proxies="127.0.0.1"
    ):
        async with site.client() as proxy:
            answers = [
                await bad_token_request(proxy, {"X-Forwarded-For": student}) for student in STUDENTS
            ]
            assert answers == [404] * len(STUDENTS)
            for _ in range(2):
                await bad_token_request(proxy, {"X-Forwarded-For": STUDENTS[0]})
            assert await bad_token_request(proxy, {"X-Forwarded-For": STUDENTS[0]}) == 429


async def bad_token_request(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """A guess at a class code: refused (404) and counted against the client's address."""
    response = await client.post(
        "/api/token", json={"code": "ZZZZZZ", "name": "Maya"}, headers=headers
    )
    return response.status_code


def test_the_school_site_sends_hsts_on_every_answer() -> None:
    lines = [line.strip() for line in (REPO / "deploy" / "Caddyfile").read_text().splitlines()]
    site = lines.index("{$SCHOOL_HOST} {")
    top_level, depth = [], 1  # the site's own directives, outside any nested block
    for line in lines[site + 1 :]:
        if depth == 1:
            top_level.append(line)
        depth += line.count("{") - line.count("}")  # a {$PLACEHOLDER} adds nothing
        if depth == 0:
            break
    # no matcher after the directive's name: it applies to every request of the site
    (hsts,) = [line for line in top_level if line.startswith("header Strict-Transport-Security")]
    max_age = re.fullmatch(r'header Strict-Transport-Security "max-age=(\d+)[^"]*"', hsts)
    assert max_age and int(max_age.group(1)) >= ONE_YEAR
    assert "respond /metrics* 404" in top_level


def test_caddy_answers_with_hsts_and_never_serves_metrics(tmp_path: Path) -> None:
    """The real proxy on the real Caddyfile (SCHOOL_HOST=localhost, its own local CA)."""
    with caddy_serving(tmp_path) as (url, root):
        context = ssl.create_default_context(cafile=str(root))
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            for path in ("/metrics", "/metrics/", "/metrics?name[]=tutor_web_redispatches_total"):
                answer = client.get(path)
                assert answer.status_code == 404 and answer.content == b""
                max_age = answer.headers["strict-transport-security"]
                assert int(max_age.removeprefix("max-age=")) >= ONE_YEAR


@contextlib.contextmanager
def caddy_serving(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("caddy")
    if binary is None:
        if os.environ.get("CI"):  # .ci/run installs it: CI must not pass without it
            pytest.fail("caddy is not installed: .ci/run installs Debian's caddy")
        pytest.skip("caddy is not installed here (the Caddyfile is still checked as text)")
    https_port, http_port = unused_port(), unused_port()
    config = tmp_path / "Caddyfile"
    config.write_text(
        "{\n\tadmin off\n\tskip_install_trust\n\tauto_https disable_redirects\n"
        f"\thttp_port {http_port}\n\thttps_port {https_port}\n"
        f"\tstorage file_system {tmp_path / 'data'}\n}}\n"
        f"import {REPO / 'deploy' / 'Caddyfile'}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "SCHOOL_HOST": "localhost",
        "TLS_MODE": "internal",
        # the in-compose LiveKit balancer's port: any free one here
        "LIVEKIT_BALANCER_PORT": str(unused_port()),
    }
    log = (tmp_path / "caddy.log").open("w")
    process = subprocess.Popen(
        [binary, "run", "--adapter", "caddyfile", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    root = tmp_path / "data" / "pki" / "authorities" / "local" / "root.crt"
    url = f"https://localhost:{https_port}"
    try:
        deadline = time.monotonic() + 20
        while not root.exists() or not listening(https_port):
            assert process.poll() is None, (tmp_path / "caddy.log").read_text()
            assert time.monotonic() < deadline, "caddy did not start"
            time.sleep(0.1)
        yield url, root
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), httpx.Client(verify=False, timeout=1) as probe:
        probe.get(f"https://localhost:{port}/metrics")
        return True
    return False


async def test_metrics_with_a_token_answer_only_its_bearer(database: RecordsDatabase) -> None:
    async for site in open_site(database, web_metrics_token=METRICS_TOKEN):
        async with site.client() as client:
            assert (await client.get("/metrics")).status_code == 401
            for wrong in (
                "Bearer not-the-token",
                f"Bearer {METRICS_TOKEN[:-1]}",
                f"Basic {METRICS_TOKEN}",
                METRICS_TOKEN,
            ):
                refused = await client.get("/metrics", headers={"Authorization": wrong})
                assert refused.status_code == 401
                assert "tutor_web" not in refused.text
            good = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
            assert good.status_code == 200 and "tutor_web_redispatches_total" in good.text


async def test_metrics_without_a_token_answer_this_machine_and_no_one_else(
    database: RecordsDatabase,
) -> None:
    # the loopback client is the trusted proxy: what it forwards is a student's request
    async for site in open_site(database, web_trusted_proxies="127.0.0.1"):
        async with site.client(follow_redirects=True) as client:
            local = await client.get("/metrics")
            assert local.status_code == 200 and "tutor_web_redispatches_total" in local.text
            unknown = await client.get("/no-such-page")
            for path in ("/metrics", "/metrics/"):
                relayed = await client.get(path, headers={"X-Forwarded-For": STUDENTS[0]})
                # as if there were no such page
                assert (relayed.status_code, relayed.json()) == (404, unknown.json())


async def test_the_sign_in_cookie_is_secure_whenever_the_page_came_over_https(
    database: RecordsDatabase,
) -> None:
    # WEB_SECURE_COOKIES unset: auto. The loopback client is the trusted TLS proxy.
    async for site in open_site(database, web_trusted_proxies="127.0.0.1"):
        assert site.settings.web_secure_cookies == "auto"
        over_https = await cookie_after_sign_in(site, {"X-Forwarded-Proto": "https"})
        assert over_https["secure"] and over_https["httponly"]
        assert over_https["samesite"].lower() == "strict"
        assert not (await cookie_after_sign_in(site, {}))["secure"]  # plain http, this machine


async def test_the_sign_in_cookie_is_always_secure_when_asked(database: RecordsDatabase) -> None:
    async for site in open_site(database, web_secure_cookies="true"):
        assert (await cookie_after_sign_in(site, {}))["secure"]


async def cookie_after_sign_in(site: Site, headers: dict[str, str]) -> Any:
    """The session cookie of a teacher's sign-in (the form, then its post), as set.

    The cookie is carried by hand: a `Secure` one is never sent back over plain http by
    a client, and the test talks http to the app as the proxy does."""
    async with site.client(headers=headers) as client:
        form = await client.get("/teacher")
        first = session_cookie(form)
        client.cookies.clear()
        signed_in = await client.post(
            "/teacher/login",
            data={"username": "rivera", "password": PASSWORD, "csrf": csrf_from(form.text)},
            headers={"Cookie": f"{first.key}={first.value}"},
        )
        assert signed_in.status_code == 303
        cookie = session_cookie(signed_in)
        assert cookie["secure"] == first["secure"]
        return cookie


def session_cookie(response: httpx.Response) -> Any:
    cookies: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookies.load(header)
    return cookies["tutor_teacher"]


def test_a_guessable_metrics_token_or_an_unknown_cookie_mode_stops_the_start() -> None:
    with pytest.raises(SettingsError, match="WEB_METRICS_TOKEN"):
        load_settings(WebSettings, web_metrics_token="metrics")
    with pytest.raises(SettingsError, match="WEB_SECURE_COOKIES"):
        load_settings(WebSettings, web_secure_cookies="yes-please")
    modes = {
        word: load_settings(WebSettings, web_secure_cookies=word).web_secure_cookies
        for word in ("", "Auto", "true", "false")
    }
    assert modes == {"": "auto", "Auto": "auto", "true": True, "false": False}


def test_caddy_never_lets_the_students_network_reach_the_livekit_server_api(
    tmp_path: Path,
) -> None:
    """The server API (/twirp: list rooms, mint nothing but read everything) stays inside
    compose; only the signalling websocket (/rtc) goes through the school's site."""
    with caddy_serving(tmp_path) as (url, root):
        context = ssl.create_default_context(cafile=str(root))
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            for path in ("/twirp/livekit.RoomService/ListRooms", "/twirp/", "/twirp"):
                answer = client.post(path, json={})
                assert answer.status_code == 404 and answer.content == b"", path


def example_values() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and value:
            values[name.strip()] = value.strip()
    return values


@pytest.mark.parametrize("name", ["LIVEKIT_API_SECRET", "ALERT_WEBHOOK_SECRET"])
def test_the_example_files_placeholder_secrets_stop_every_start(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A school that copied .env.example and forgot a secret does not start: not a worker,
    not `agent check`, not the web service where it signs with it (each names the setting)."""
    placeholder = example_values()[name]
    monkeypatch.setenv(name, placeholder)
    with pytest.raises(SettingsError, match=f"{name} .*placeholder"):
        load_settings()  # a worker's settings
    commands = [["check"]]
    if name == "LIVEKIT_API_SECRET":  # the web service signs the students' tokens with it
        with pytest.raises(SettingsError, match=name):
            load_settings(WebSettings)
        commands.append(["web", "--port", str(unused_port())])
    env = {**os.environ, name: placeholder}
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "agent", *command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and name in done.stdout + done.stderr, command


@pytest.mark.parametrize("name", ["LIVEKIT_API_SECRET", "WEB_SESSION_SECRET"])
def test_a_short_secret_stops_the_start(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "x" * 31)
    with pytest.raises(SettingsError, match=f"{name} .*32 characters"):
        load_settings(WebSettings)


def test_alerts_with_a_childs_words_go_only_over_https() -> None:
    for url in ("http://alerts.school.example/teacher", "ftp://alerts.school.example"):
        with pytest.raises(SettingsError, match="SAFEGUARDING_WEBHOOK_URL"):
            load_settings(safeguarding_webhook_url=url)
    for url in ("https://alerts.school.example/teacher", "http://127.0.0.1:8099/teacher"):
        assert load_settings(teacher_webhook_url=url).teacher_webhook_url == url


async def test_no_redirect_points_where_a_forged_host_header_says(
    database: RecordsDatabase,
) -> None:
    async for site in open_site(database):
        async with site.client() as client:
            for path in ("/teacher/", "/api/teacher/classes/", "/healthz/"):
                answer = await client.get(path, headers={"Host": "evil.example"})
                assert answer.status_code == 404, path
                assert "evil.example" not in answer.headers.get("location", "")
