"""The compose stack, the server config and the image, checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.settings import Settings, WebSettings, load_settings
from harness import REPO
from harness.realserver import TESTED_SERVER

WORKERS = {"orchestrator": "agent/workers/orchestrator.py", "english": "agent/workers/english.py"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def livekit_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "livekit.yaml").read_text())


def test_compose_runs_exactly_the_server_and_both_named_workers(compose: dict) -> None:
    services = compose["services"]
    by_profile = {name: tuple(service.get("profiles", ())) for name, service in services.items()}
    assert by_profile == {
        "livekit": (),
        "orchestrator": (),
        "english": (),
        "web": (),
        "proxy": ("tls",),
        "livekit-b": ("cluster",),
        "redis": ("cluster",),
        "postgres": ("cluster",),
    }
    for name, path in WORKERS.items():
        command = services[name]["command"]
        assert command[-2:] == ["start", path]
        # the server's own address unless the cluster profile points them at its balancer
        url = services[name]["environment"]["LIVEKIT_URL"]
        assert url == "${WORKER_LIVEKIT_URL:-ws://livekit:7880}"
    # the worker modules register under the names the dispatches use
    defaults = Settings.model_fields
    assert defaults["orchestrator_agent_name"].default == "learning-orchestrator"
    assert defaults["english_agent_name"].default == "learning-english"
    assert services["orchestrator"]["image"] == services["english"]["image"]
    assert "build" in services["orchestrator"]


def test_compose_serves_the_web_app_on_8080_and_https_only_in_the_tls_profile(
    compose: dict,
) -> None:
    services = compose["services"]
    web = services["web"]
    assert web["command"] == ["python", "-m", "agent", "web"]
    assert "127.0.0.1:8080:8080" in web["ports"] and web["environment"]["WEB_HOST"] == "0.0.0.0"
    assert web["image"] == services["orchestrator"]["image"]
    assert web["depends_on"]["livekit"]["condition"] == "service_healthy"
    assert "127.0.0.1:8080/healthz" in " ".join(web["healthcheck"]["test"])
    assert "records:/app/data" in web["volumes"]  # the same store the workers write
    assert "profiles" not in web
    proxy = services["proxy"]
    assert proxy["profiles"] == ["tls"] and "443:443" in proxy["ports"]
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy {$LIVEKIT_UPSTREAMS:livekit:7880}" in caddyfile
    assert "/rtc" in caddyfile and "reverse_proxy web:8080" in caddyfile
    assert "--node-ip" in services["livekit"]["command"]


def test_server_image_is_pinned_to_the_version_the_real_server_tier_tests(compose: dict) -> None:
    image = compose["services"]["livekit"]["image"]
    assert re.fullmatch(r"livekit/livekit-server:v\d+\.\d+\.\d+", image)
    assert image == f"livekit/livekit-server:{TESTED_SERVER}"


def test_server_ports_match_its_config(compose: dict, livekit_config: dict) -> None:
    ports = compose["services"]["livekit"]["ports"]
    rtc = livekit_config["rtc"]
    # signalling on this machine's loopback only: other machines come through the TLS proxy
    assert "127.0.0.1:7880:7880" in ports and livekit_config["port"] == 7880
    assert not [port for port in ports if port.startswith(("7880", "0.0.0.0:7880"))]
    assert "7881:7881" in ports and rtc["tcp_port"] == 7881
    udp = f"{rtc['port_range_start']}-{rtc['port_range_end']}"
    assert f"{udp}:{udp}/udp" in ports


def test_keys_come_from_the_environment_not_the_repository(
    compose: dict, livekit_config: dict
) -> None:
    assert "keys" not in livekit_config
    keys = compose["services"]["livekit"]["environment"]["LIVEKIT_KEYS"]
    assert "${LIVEKIT_API_KEY" in keys and "${LIVEKIT_API_SECRET" in keys
    for worker in WORKERS:
        assert compose["services"][worker]["env_file"] == ".env"
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".env" in ignored and ".env" in (REPO / ".dockerignore").read_text().split()


def test_every_node_posts_its_webhooks_to_the_web_services_route(
    compose: dict, livekit_config: dict
) -> None:
    """The live view's joins and leaves: each LiveKit node posts to the web service's
    webhook route, signed with the API key (the server refuses webhooks without one)."""
    from agent.web.routes import live

    route = "/api/livekit/webhook"
    assert route in {getattr(r, "path", "") for r in live.router.routes}
    web_port = compose["services"]["web"]["environment"]["WEB_PORT"]
    expected = f"http://web:{web_port}{route}"
    assert livekit_config["webhook"]["urls"] == [expected]
    second = yaml.safe_load(compose["services"]["livekit-b"]["environment"]["LIVEKIT_CONFIG"])
    assert second["webhook"]["urls"] == [expected]
    for node in ("livekit", "livekit-b"):
        assert compose["services"][node]["environment"]["LIVEKIT_WEBHOOK_API_KEY"] == (
            "${LIVEKIT_API_KEY}"
        )


def test_services_wait_for_health_and_restart(compose: dict) -> None:
    services = compose["services"]
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"]
    for worker in WORKERS:
        assert services[worker]["depends_on"]["livekit"]["condition"] == "service_healthy"
        # each replica's own port, found by the health module (not a fixed one)
        assert services[worker]["healthcheck"]["test"][-2:] == ["-m", "agent.workers.health"]


def test_worker_services_scale_without_shared_fixed_ports(compose: dict) -> None:
    """`docker compose up --scale orchestrator=3 --scale english=2`: replicas share the
    server's network namespace, so nothing of theirs may be a fixed port or a fixed name."""
    services = compose["services"]
    for worker in WORKERS:
        service = services[worker]
        assert service["environment"]["WORKER_HTTP_PORT"] == "0"
        assert "ports" not in service and "container_name" not in service
        # metrics stay off unless an operator sets a port (then: one replica)
        assert service["environment"]["PROMETHEUS_PORT"].endswith(":-}")
    assert Settings.model_fields["worker_http_port"].metadata  # 0 is allowed (ge=0)
    assert load_settings(worker_http_port=0).worker_http_port == 0


def test_no_redis_without_the_cluster_profile(compose: dict, livekit_config: dict) -> None:
    assert compose["services"]["redis"]["profiles"] == ["cluster"]
    assert "redis" not in livekit_config
    # the first node is on its own unless .env names the cluster's Redis
    assert compose["services"]["livekit"]["environment"]["REDIS_HOST"] == (
        "${LIVEKIT_REDIS_HOST:-}"
    )


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs it")
        pytest.skip("docker-compose is not installed here (CI installs it)")
    for name in ("docker-compose.yml", "livekit.yaml", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    proc = subprocess.run(
        [binary, "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    assert rendered["services"]["livekit"]["environment"]["LIVEKIT_KEYS"] == (
        "devkey: change-me-to-a-long-random-secret-000"
    )
    # the server signs its webhooks with the same key the web service verifies them with
    assert rendered["services"]["livekit"]["environment"]["LIVEKIT_WEBHOOK_API_KEY"] == "devkey"


def test_dockerfile_installs_exactly_the_lock_and_runs_unprivileged() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY .*uv\.lock", dockerfile, re.M)
    installs = re.findall(r"uv sync[^\n]*", dockerfile)
    assert installs and all("--frozen" in line for line in installs)
    assert "pip install" not in dockerfile.replace("pip install --no-cache-dir uv==", "")
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "livekit.agents download-files" in dockerfile
    # the student page's script is built from the npm lock file in a Node stage
    assert re.search(r"^FROM node:\S+ AS frontend", dockerfile, re.M)
    assert "npm ci" in dockerfile and "package-lock.json" in dockerfile
    assert re.search(r"^COPY --from=frontend .*student\.js", dockerfile, re.M)


def test_the_image_ships_the_tutor_roster() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY tutors\.toml ", dockerfile, re.M)


def test_env_example_documents_every_setting_with_a_placeholder() -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_]+=", line)}
    settings = {*Settings.model_fields, *WebSettings.model_fields}
    assert documented == {name.upper() for name in settings}
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            assert lines[i - 1].startswith("#"), f"{line} has no comment"
    secret = next(line for line in lines if line.startswith("OPENAI_API_KEY="))
    assert not secret.split("=", 1)[1].startswith("sk-")


CLUSTER_ENV = {
    "LIVEKIT_REDIS_HOST": "redis:6379",
    "LIVEKIT_UPSTREAMS": "livekit:7880 livekit-b:7880",
    "WORKER_NETWORK_MODE": "service:proxy",
    "WORKER_LIVEKIT_URL": "ws://127.0.0.1:7880",
    "WEB_LIVEKIT_URL": "ws://proxy:7880",
    "POSTGRES_PASSWORD": "a-long-random-password-000",
    "RECORDS_URL": "postgresql+asyncpg://tutor:a-long-random-password-000@postgres/tutor",
}


def test_the_cluster_profile_puts_two_nodes_on_redis_behind_the_health_checked_proxy(
    tmp_path: Path,
) -> None:
    """What `docker compose --profile tls --profile cluster config` makes of the file with
    the cluster settings README gives: the same Redis for both nodes, media ports apart,
    the workers and the web service on the proxy's balancer (which outlives a node), and
    the records in PostgreSQL."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs it")
        pytest.skip("docker-compose is not installed here (CI installs it)")
    for name in ("docker-compose.yml", "livekit.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    env_file = (REPO / ".env.example").read_text()
    env_file += "".join(f"{name}={value}\n" for name, value in CLUSTER_ENV.items())
    (tmp_path / ".env").write_text(env_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    proc = subprocess.run(
        [binary, "--profile", "tls", "--profile", "cluster", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    for node in ("livekit", "livekit-b"):
        assert services[node]["environment"]["REDIS_HOST"] == "redis:6379"
    media = [
        {
            int(p["published"])
            for p in services[node]["ports"]
            if isinstance(p, dict) and p.get("protocol") == "udp"
        }
        for node in ("livekit", "livekit-b")
    ]
    assert media[0] and media[1] and not media[0] & media[1]  # each node's own ICE ports
    assert services["proxy"]["environment"]["LIVEKIT_UPSTREAMS"] == "livekit:7880 livekit-b:7880"
    for worker in WORKERS:
        assert services[worker]["network_mode"] == "service:proxy"
        assert services[worker]["environment"]["LIVEKIT_URL"] == "ws://127.0.0.1:7880"
    assert services["web"]["environment"]["LIVEKIT_URL"] == "ws://proxy:7880"
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "health_uri /" in caddyfile and ":{$LIVEKIT_BALANCER_PORT:7880}" in caddyfile
