"""`python -m bench resume`: how long a student waits when their conversation is broken, on
the real LiveKit server, and whether the record of it stays whole.

Inside `../shared/livekit-server/in-netns.sh`: two LiveKit nodes sharing Redis behind Caddy
(the compose profile "cluster"), the wire-compatible model fake, two orchestrator workers
as processes (a killed one, or a killed node, is replaced before the next trial), the web
service as a process, and the student page in Debian's Chromium asking one question.
Per trial and case it reports the seconds from the loss to the first words of the tutor
that continues (the page's captions are synced to the voice, so their first word is the
first audio), and checks the session's export afterwards (every turn once, in order):

- blip: an `rtc` student's signalling connection is cut until the SDK says it is
  reconnecting, then restored: the time to "reconnected" (the tutor never left);
- reload: the page is reloaded: it rejoins its visit and the tutor welcomes the student back;
- lost worker: the worker holding the job is killed (SIGKILL, its job processes with it);
- lost node: the LiveKit node holding the room is killed (SIGKILL): the page reconnects
  through the one URL and the room is made again on the live node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit import api
from playwright.async_api import Browser, Page, async_playwright

from agent.dispatch.token import student_token
from agent.records import RecordsStore
from harness import realserver
from harness.fakes.production import FIFTY_SIX, GREETING, SEVEN_EIGHTS, WELCOME_BACK
from harness.fakes.tcp_proxy import TcpProxy
from harness.page import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    FAKE_MICROPHONE,
    build_student_script,
    class_code,
    open_page,
)
from harness.realserver import ModelFake, Process, asked_once, session_of, worker_holding
from harness.report import percentile, report, table
from harness.student import join

CASES = ("blip", "reload", "lost worker", "lost node")
VERBOSE = False  # --verbose: the page's console and requests after each loss, to stderr
# on every load of the page: when (wall clock, as `time.time()` here) a caption first
# showed each watched text, kept in `window.firstSeen`
WATCH = """
window.firstSeen = {};
document.addEventListener('DOMContentLoaded', () => {
  const captions = document.querySelector('#captions');
  const note = () => {
    for (const text of WATCHED) {
      if (!(text in window.firstSeen) && captions.textContent.includes(text)) {
        window.firstSeen[text] = Date.now();
      }
    }
  };
  const options = { childList: true, subtree: true, characterData: true };
  new MutationObserver(note).observe(captions, options);
});
"""


@dataclass
class Results:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CASES})
    whole: dict[str, list[bool]] = field(default_factory=lambda: {c: [] for c in CASES})


@dataclass
class Stack:
    env: dict[str, str]
    run_dir: Path
    models: ModelFake
    server: realserver.Cluster
    server_api: api.LiveKitAPI
    url: str  # the web service
    workers: list[Process]
    agent_name: str


async def blip(stack: Stack) -> float:
    room = f"bench-blip-{secrets.token_hex(4)}"
    settings = realserver.stack_settings(stack.server.url)
    host, port = stack.server.url.removeprefix("ws://").split(":")
    async with TcpProxy(host, int(port)) as signalling:
        token = student_token(settings, room=room, identity="maya")
        student = await join(f"ws://127.0.0.1:{signalling.port}", token, "maya")
        try:
            await student.wait_for_caption(GREETING, realserver.TURN)
            reconnecting, reconnected = asyncio.Event(), asyncio.Event()
            student.room.on("reconnecting", lambda *_: reconnecting.set())
            student.room.on("reconnected", lambda *_: reconnected.set())
            signalling.cut()
            await asyncio.wait_for(reconnecting.wait(), realserver.TURN)
            restored = time.monotonic()
            signalling.restore()
            await asyncio.wait_for(reconnected.wait(), realserver.TURN)
            return time.monotonic() - restored
        finally:
            await student.leave()


async def page_trial(stack: Stack, browser_of: Any, case: str) -> tuple[float, bool]:
    stack.models.questions.expect(SEVEN_EIGHTS)
    browser: Browser = await browser_of(asked_once(stack.run_dir / "speech", f"bench-{case}"))
    context = await browser.new_context()
    watched = json.dumps([FIFTY_SIX, WELCOME_BACK])
    await context.add_init_script(f"const WATCHED = {watched};\n{WATCH}")
    page, joined = await open_page(context, stack.url, await class_code(stack.env))
    timeline: list[str] = []
    if VERBOSE:
        page.on("console", lambda m: timeline.append(f"{time.time():.3f} console {m.text[:160]}"))
        page.on("request", lambda r: timeline.append(f"{time.time():.3f} request {r.url[:100]}"))
    try:
        await caption(page, FIFTY_SIX)
        holder, node = None, None
        if case == "reload":
            lost_at = time.time()
            await page.reload()
        elif case == "lost worker":
            holder = await worker_holding(stack.server_api, joined["room"], stack.workers)
            lost_at = time.time()
            holder.kill()
        else:
            node = stack.server.node_holding(joined["room"])
            lost_at = time.time()
            node.process.kill()
        try:
            back = await caption(page, WELCOME_BACK)
        finally:
            if VERBOSE:
                print(f"--- {case}: lost at {lost_at:.3f}", file=sys.stderr)
                after = [t for t in timeline if float(t.split()[0]) >= lost_at - 1]
                print("\n".join(after), file=sys.stderr)
        if VERBOSE:
            print(f"--- back {back - lost_at:.2f} s", file=sys.stderr)
        # what was killed is replaced for the next trial, once this one is timed
        if holder is not None:
            stack.workers.remove(holder)
            stack.workers.append(await spare_worker(stack))
        if node is not None:
            await stack.server.restart(node)
        await page.get_by_role("button", name="Leave").click()
        await realserver.wait_until_empty(stack.server_api, joined["room"])
        return back - lost_at, await recorded_whole(stack.env, session_of(joined))
    finally:
        await browser.close()


async def caption(page: Page, text: str) -> float:
    """When (wall clock) a caption first showed `text` on this load of the page."""
    script = f"() => window.firstSeen && window.firstSeen[{json.dumps(text)}]"
    handle = await page.wait_for_function(script, timeout=realserver.TURN * 1000)
    return float(await handle.json_value()) / 1000


async def recorded_whole(env: dict[str, str], session_id: str) -> bool:
    """Every turn of the session once, in time order; the student greeted and heard once
    (an answer cut short by a killed worker is not a turn: it was never finished)."""
    store = RecordsStore(env["RECORDS_URL"])
    try:
        doc = await store.export(session_id)
    finally:
        await store.aclose()
    if doc is None:
        return False
    turns = [(t["speaker"], t["text"], t["at"]) for t in doc["turns"]]
    texts = [text for _, text, _ in turns]
    return (
        len(set(turns)) == len(turns)
        and [at for _, _, at in turns] == sorted(at for _, _, at in turns)
        and texts.count(SEVEN_EIGHTS) == 1
        and texts.count(GREETING) == 1
        and texts.count(FIFTY_SIX) <= 1
    )


async def spare_worker(stack: Stack) -> Process:
    env = stack.env | {"ORCHESTRATOR_AGENT_NAME": stack.agent_name}
    name = f"orchestrator-{secrets.token_hex(2)}"
    return await realserver.start_worker("learning-orchestrator", env, stack.run_dir, name=name)


async def run(trials: int, run_dir: Path, cases: tuple[str, ...] = CASES[1:]) -> Results:
    build_student_script()
    server = await realserver.start_cluster(run_dir)
    models = ModelFake()
    models.start()
    env = realserver.stack_env(server, models, run_dir)
    (run_dir / "speech").mkdir(exist_ok=True)
    agent_name = f"learning-orchestrator-bench-{secrets.token_hex(3)}"
    server_api = api.LiveKitAPI(server.http_url, realserver.API_KEY_ID, realserver.API_SECRET)
    processes: list[Process] = []
    stack: Stack | None = None
    results = Results()
    try:
        web_port = realserver.free_port()
        web_env = env | {
            "LIVEKIT_PUBLIC_URL": env["LIVEKIT_URL"],
            "ORCHESTRATOR_AGENT_NAME": agent_name,
        }
        processes.append(await realserver.start_web(web_env, run_dir, web_port))
        stack = Stack(
            env, run_dir, models, server, server_api, f"http://127.0.0.1:{web_port}", [], agent_name
        )
        # the blip's student takes the default worker's orchestrator
        processes.append(await realserver.start_worker("learning-orchestrator", env, run_dir))
        stack.workers = [await spare_worker(stack), await spare_worker(stack)]
        async with async_playwright() as playwright:

            async def browser_of(wav: Path) -> Browser:
                return await playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[
                        *CHROMIUM_FLAGS,
                        *FAKE_MICROPHONE,
                        f"--use-file-for-fake-audio-capture={wav}",
                    ],
                )

            for _ in range(trials):
                results.seconds["blip"].append(await blip(stack))
                results.whole["blip"].append(True)
                for case in cases:
                    seconds, whole = await page_trial(stack, browser_of, case)
                    results.seconds[case].append(seconds)
                    results.whole[case].append(whole)
    finally:
        await server_api.aclose()
        for process in [*processes, *(stack.workers if stack is not None else [])]:
            await process.stop()
        models.stop()
        await server.stop()
    return results


def summary(results: Results) -> str:
    rows = []
    labels = {
        "blip": "blip: signalling restored → reconnected (same tutor)",
        "reload": "reload → the resumed tutor's first words",
        "lost worker": "worker SIGKILLed → the resumed tutor's first words",
        "lost node": "LiveKit node SIGKILLed → the resumed tutor's first words",
    }
    for case in CASES:
        values = results.seconds[case]
        whole = results.whole[case]
        if not values:  # not run (--only)
            continue
        rows.append(
            [
                labels[case],
                f"{percentile(values, 50):.2f}",
                f"{max(values):.2f}",
                f"{sum(whole)}/{len(whole)}",
            ]
        )
    return table(["case", "p50 s", "max s", "export whole (every turn once, in order)"], rows)


NOTES = """How to read it: two real LiveKit nodes (v1.9.12) on Redis behind Caddy (health
checks every second) in their network namespace, as the compose profile "cluster"; two
orchestrator workers (two warm job processes each; the killed one is replaced before the
next trial); the web service; Chromium on the student page, its microphone a WAV asking
seven times eight. The model fake answers with first token 0.4 s and speech first byte 0.3 s.
A lost worker is found by the page: its tutor answers no `tutor.ping` for 1.5 s (the server
keeps a dead worker's participant ~20 s and never reassigns its job), then the web service
removes it and dispatches the orchestrator, which reads the records and welcomes the
student back. A reload includes loading the page and connecting again. A lost node is left
out of room placement 2-5 s after it dies (its stats in Redis 5 s old); a join meanwhile
hangs there, so the page tries with a 1.5 s signal timeout, 300 ms apart, and rejoins at
once when the web service cannot reach the room's node either."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench resume", description=__doc__)
    parser.add_argument("--trials", type=int, default=3, help="trials of each case")
    parser.add_argument("--quick", action="store_true", help="CI size: one trial")
    parser.add_argument("--only", choices=CASES[1:], help="only this case (and the blip)")
    parser.add_argument("--no-append", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--verbose", action="store_true", help="print each loss's timeline")
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    if problem := realserver.realserver_problem():
        print(f"bench resume: {problem}", file=sys.stderr)
        return 2
    with realserver.run_directory() as run_dir:
        print(f"logs: {run_dir}", file=sys.stderr)
        cases = (args.only,) if args.only else CASES[1:]
        results = asyncio.run(run(1 if args.quick else max(1, args.trials), run_dir, cases))
    report(
        "A conversation survives: blip, reload, lost worker, lost node",
        summary(results),
        append=not args.no_append,
        notes=NOTES,
    )
    return 0
