"""Our Prometheus series on the framework's /metrics endpoint, and our handoff spans through
the framework's tracer, exported over real OTLP/HTTP to a local receiver."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from livekit.agents import telemetry
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.dispatch.metadata import dispatch_metadata
from agent.telemetry.tracing import configure_tracing
from harness.databases import RecordsDatabase
from harness.fakes.cluster import ENGLISH_WORKER, ORCHESTRATOR_WORKER, Cluster
from harness.fakes.llm import call, say
from harness.fakes.room import RoomHub

WAIT = 10.0
QUESTION = "What is seven times eight, my friend?"


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """The framework's own metrics server, as a worker with PROMETHEUS_PORT runs it."""
    server = telemetry.http_server.HttpServer("127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/metrics"
    finally:
        await server.aclose()


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The value of `name` with (at least) `labels`, 0 if absent."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            return value
    return 0.0


async def conversation(database: RecordsDatabase, *, english_ready: bool) -> None:
    """In-session to Math, back, then a crossing to English (that falls back if not ready)."""
    scripts = {
        "orchestrator": [
            say("Hi!"),
            call("route_to_math", question_summary=QUESTION),
            call("route_to_english", question_summary="What is a noun?"),
        ],
        "math": [say("Fifty-six."), call("route_back_to_orchestrator", reason="English now")],
        "english": [say("A noun names a thing.")],
        "english_rt": [say("A noun names a thing.")],
    }
    store = database.store()
    unready = set() if english_ready else {ENGLISH_WORKER}
    cluster = Cluster(RoomHub(), scripts, records=store, unready_workers=unready)
    try:
        job = await cluster.start_job(
            ORCHESTRATOR_WORKER, dispatch_metadata(session="s-m", student="kid")
        )
        await asyncio.wait_for(job.spoke.wait(), WAIT)
        job.session.userdata.crossing.ready_timeout = 0.3 if not english_ready else 2.0
        await job.session.run(user_input=QUESTION)
        await cluster.said(job, "Fifty-six.")
        await job.session.run(user_input="Can we do English?")
        await job.session.userdata.crossing.wait_idle()
        await cluster.until(lambda: any("noun" in s for j in cluster.jobs for s in j.said))
    finally:
        await cluster.close()
        await store.aclose()


async def test_the_metrics_endpoint_exposes_our_series(
    database: RecordsDatabase, metrics_url: str
) -> None:
    before = await scrape(metrics_url)
    await conversation(database, english_ready=False)
    after = await scrape(metrics_url)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("tutor_handoffs_total", mode="in_session", to_tutor="math") == 1
    assert grew("tutor_handoffs_total", mode="in_session", to_tutor="orchestrator") == 1
    assert grew("tutor_handoffs_total", mode="cross_worker", outcome="fallback_not_ready") == 1
    assert grew("tutor_crossing_fallbacks_total", to_tutor="english", reason="not_ready") == 1
    assert grew("tutor_records_written_total") >= 8
    assert "tutor_records_queue_depth" in after
    assert "tutor_records_write_failures_total" in after


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps what it receives."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1/traces", received
    finally:
        await runner.cleanup()


async def test_each_handoff_is_one_span_with_session_from_to_and_outcome(
    database: RecordsDatabase,
    otlp_receiver: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    endpoint, received = otlp_receiver
    previous = telemetry.tracer._tracer_provider
    provider = configure_tracing(endpoint, service="learning-orchestrator")
    assert provider is not None
    try:
        await conversation(database, english_ready=True)
        await asyncio.to_thread(provider.force_flush)
    finally:
        telemetry.tracer.set_provider(previous)
        await asyncio.to_thread(provider.shutdown)

    spans = [
        span
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    handoffs = [
        {a.key: a.value.string_value for a in span.attributes}
        for span in spans
        if span.name == "tutor.handoff"
    ]
    moves = [
        (h["tutor.handoff.from"], h["tutor.handoff.to"], h["tutor.handoff.outcome"])
        for h in handoffs
    ]
    assert moves == [
        ("orchestrator", "math", "completed"),
        ("math", "orchestrator", "completed"),
        ("orchestrator", "english", "handed_over"),
    ]
    assert {h["tutor.session_id"] for h in handoffs} == {"s-m"}
    # the question (a child's words) travels in no span: PII stays out by default
    exported = b"".join(request.SerializeToString() for request in received)
    assert QUESTION.encode() not in exported
