"""Our Prometheus series and OpenTelemetry spans, next to the framework's own telemetry."""
