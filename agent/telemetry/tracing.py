"""OpenTelemetry traces through the framework's own tracer (`OTLP_TRACES_ENDPOINT`)."""

from __future__ import annotations

import functools
import logging

from livekit.agents.telemetry import set_tracer_provider
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

logger = logging.getLogger("tutor.telemetry")


@functools.cache
def configure_tracing(
    endpoint: str, *, service: str, allow_pii: bool = False
) -> TracerProvider | None:
    """Export the framework's spans and ours over OTLP/HTTP to `endpoint`; once per process
    (a worker running its jobs in threads prewarms each in the same process).

    `allow_pii` False (the default) makes the framework strip conversation text from every
    span before export: a child's words do not leave in traces unless an operator says so.
    """
    if not endpoint:
        return None

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    set_tracer_provider(provider, allow_pii=allow_pii)
    logger.info("exporting traces", extra={"endpoint": endpoint, "allow_pii": allow_pii})
    return provider
