"""`python -m agent check`: what is wrong with this installation, one line per check.

Each check prints `OK` or `FAIL` with a one-line cause and fix; the command exits 1 if any
failed (2 if the settings cannot even be read). It makes only harmless calls: LiveKit's
dispatch list of a room that does not exist, each model endpoint's model list, a rolled-back
write to the records store, and it reads the compose file and `livekit.yaml` if present.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import openai as openai_sdk
import yaml
from livekit.api import LiveKitAPI, TwirpError
from sqlalchemy import delete, insert

from agent.config.roster import Roster, RosterError, roster_for
from agent.config.settings import MODEL_ROLES, Settings, SettingsError, load_settings
from agent.dispatch.token import NAME_PATTERN
from agent.records.schema import SessionRow
from agent.records.store import RecordsStore, utc_now
from agent.workers.models import Endpoint, endpoint

CHECK_TIMEOUT = 8.0
PROBE_ROOM = "voice-tutor-check"


@dataclass(frozen=True)
class Result:
    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


def ok(what: str, detail: str) -> Result:
    return Result(True, what, detail)


def fail(what: str, cause: str, fix: str) -> Result:
    return Result(False, what, f"{cause} -> {fix}")


async def check_livekit(settings: Settings) -> Result:
    what = f"LiveKit {settings.livekit_url}"
    api = LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
        failover=False,
    )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await api.agent_dispatch.list_dispatch(PROBE_ROOM)
    except TwirpError as e:
        if e.status in (401, 403):
            return fail(
                what,
                f"the server rejected API key {settings.livekit_api_key!r} ({e.status})",
                "set LIVEKIT_API_KEY and LIVEKIT_API_SECRET to a pair in the server's keys",
            )
        return fail(what, f"the server answered {e.status} {e.code}", "check the server's log")
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        return fail(
            what,
            f"not reachable ({type(e).__name__})",
            "start the server (docker compose up) or fix LIVEKIT_URL",
        )
    finally:
        await api.aclose()
    return ok(what, f"reachable, API key {settings.livekit_api_key!r} accepted")


def _client(settings: Settings, point: Endpoint) -> openai_sdk.AsyncOpenAI:
    if point.azure:
        return openai_sdk.AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_key=point.api_key,
            api_version=settings.azure_openai_api_version or None,
            max_retries=0,
            timeout=CHECK_TIMEOUT,
        )
    return openai_sdk.AsyncOpenAI(
        api_key=point.api_key, base_url=point.base_url, max_retries=0, timeout=CHECK_TIMEOUT
    )


def role_models(settings: Settings, roster: Roster, role: str) -> list[str]:
    """The models `role` serves: every tutor's chat and realtime models come from the roster."""
    if role == "llm":
        return list(dict.fromkeys(roster.pipeline_model(kind) for kind in roster.tutors))
    if role == "realtime":
        realtime = [
            spec.model for kind, spec in roster.tutors.items() if roster.runs_realtime(kind)
        ]
        return list(dict.fromkeys(realtime))
    return [getattr(settings, f"{role}_model")]


async def check_model_endpoint(settings: Settings, roster: Roster, role: str) -> Result:
    point = endpoint(settings, role)
    what = f"{role.upper()} endpoint {point.describe()}"
    variable = f"{role.upper()}_API_KEY or " + (
        "AZURE_OPENAI_API_KEY" if point.azure else "OPENAI_API_KEY"
    )
    client = _client(settings, point)
    try:
        listed = [model.id async for model in client.models.list()]
    except openai_sdk.AuthenticationError:
        return fail(what, "the key was rejected (401)", f"set {variable} to a key it accepts")
    except openai_sdk.APIStatusError as e:
        return fail(what, f"answered {e.status_code}", f"check {role.upper()}_BASE_URL")
    except (openai_sdk.APIConnectionError, openai_sdk.APITimeoutError) as e:
        base = f"{role.upper()}_BASE_URL or OPENAI_BASE_URL"
        return fail(what, f"not reachable ({type(e).__name__})", f"start it or fix {base}")
    finally:
        await client.close()
    models = role_models(settings, roster, role)
    if not models:
        return ok(what, "key accepted; no tutor of the roster uses this role")
    missing = [name for name in models if listed and name not in listed]
    if missing:
        return ok(what, f"key accepted; it does not list model(s) {', '.join(missing)}")
    return ok(what, f"key accepted, model(s) {', '.join(models)}")


def check_worker_names(roster: Roster) -> Result:
    names = list(roster.workers)
    bad = [name for name in names if not NAME_PATTERN.fullmatch(name)]
    if bad:
        return fail(
            "worker names",
            f"{bad[0]!r} is not a valid agent name",
            "use letters, digits, '-', '_' and '.' in the roster's [workers] names "
            "(or ORCHESTRATOR_AGENT_NAME/ENGLISH_AGENT_NAME)",
        )
    return ok("worker names", ", ".join(names))


async def check_records(settings: Settings) -> Result:
    if not settings.records_url:
        return ok("records store", "off (RECORDS_URL is empty): nothing is recorded")
    store = RecordsStore(settings.records_url)
    what = f"records store {store.describe()}"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await store.ensure_schema()
            async with store.engine.connect() as conn:
                transaction = await conn.begin()
                await conn.execute(
                    insert(SessionRow).values(
                        id="__check__", student="", room="", started_at=utc_now()
                    )
                )
                await conn.execute(delete(SessionRow).where(SessionRow.id == "__check__"))
                await transaction.rollback()
    except Exception as e:
        return fail(
            what,
            f"not writable ({type(e).__name__}: {_first_line(e)})",
            "fix RECORDS_URL, the database's permissions or its server",
        )
    finally:
        await store.aclose()
    return ok(what, "writable, schema up to date")


def check_compose_layout(directory: Path) -> Result:
    compose_file, server_file = directory / "docker-compose.yml", directory / "livekit.yaml"
    what = "compose ports vs livekit.yaml"
    if not compose_file.exists() or not server_file.exists():
        return ok(what, "no docker-compose.yml and livekit.yaml here: not checked")
    try:
        compose = yaml.safe_load(compose_file.read_text())
        server = yaml.safe_load(server_file.read_text())
        problems = compose_problems(compose, server)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        return fail(what, f"cannot read them ({type(e).__name__})", "restore them from the repo")
    if problems:
        return fail(what, problems[0], "make docker-compose.yml and livekit.yaml agree")
    return ok(what, "signalling, ICE ports and worker health ports agree")


def compose_problems(compose: dict[str, Any], server: dict[str, Any]) -> list[str]:
    services = compose["services"]
    # "7880:7880", or "127.0.0.1:7880:7880" for this machine only
    published = [
        str(p).split(":", 1)[1] if str(p).count(":") == 2 else str(p)
        for p in services["livekit"].get("ports", [])
    ]
    rtc = server["rtc"]
    udp = f"{rtc['port_range_start']}-{rtc['port_range_end']}"
    wanted = {
        f"{server['port']}:{server['port']}": "signalling port",
        f"{rtc['tcp_port']}:{rtc['tcp_port']}": "ICE/TCP port",
        f"{udp}:{udp}/udp": "ICE/UDP range",
    }
    problems = [
        f"livekit.yaml's {name} {mapping} is not published by the livekit service"
        for mapping, name in wanted.items()
        if mapping not in published
    ]
    shared = [
        name
        for name, service in services.items()
        if str(service.get("network_mode", "")) == "service:livekit"
    ]
    health = [str(services[name].get("environment", {}).get("WORKER_HTTP_PORT")) for name in shared]
    fixed = [port for port in health if port != "0"]  # 0: a free port per replica
    if len(set(fixed)) != len(fixed):
        problems.append("two workers on the server's network use the same WORKER_HTTP_PORT")
    return problems


async def run_checks(settings: Settings, roster: Roster, directory: Path) -> list[Result]:
    pending: list[Callable[[], Awaitable[Result]]] = [lambda: check_livekit(settings)]
    pending += [
        lambda role=role: check_model_endpoint(settings, roster, role) for role in MODEL_ROLES
    ]
    pending.append(lambda: check_records(settings))
    results = list(await asyncio.gather(*(make() for make in pending)))
    results.insert(1 + len(MODEL_ROLES), check_worker_names(roster))
    results.append(check_compose_layout(directory))
    return results


def main(out: TextIO | None = None, directory: Path | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"FAIL  settings: {e}", file=out)
        return 2
    print("OK    settings: read from the environment and .env", file=out)
    try:
        roster = roster_for(settings)
    except RosterError as e:
        for problem in e.problems:
            print(f"FAIL  tutor roster {e.source}: {problem}", file=out)
        return 2
    print(f"OK    tutor roster {roster.source}: {', '.join(roster.tutors)}", file=out)
    results = asyncio.run(run_checks(settings, roster, directory or Path.cwd()))
    for result in results:
        print(result.line(), file=out)
    failed = sum(not r.ok for r in results)
    print(f"checks: {len(results) - failed} ok, {failed} failed", file=out)
    return 1 if failed else 0


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return re.sub(r"\s+", " ", lines[0])[:160] if lines else "no detail"
