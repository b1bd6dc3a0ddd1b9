"""The product's own Prometheus series, served with the framework's on `PROMETHEUS_PORT`.

Job processes write them to the multiprocess directory the worker sets up
(`prometheus_multiproc_dir`), and the worker's `/metrics` endpoint collects them all.
Labels are tutor kinds, modes and outcomes only: never a session, student or text.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# seconds: a silence a student can hear, and a check that runs beside the tutor's model
GAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CHECK_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)

# handoffs and crossings
HANDOFFS = Counter(
    "tutor_handoffs_total",
    "Handoffs between tutors, by mode (in_session, cross_worker) and outcome",
    ["mode", "from_tutor", "to_tutor", "outcome"],
)
HANDOFF_SILENCE_GAP = Histogram(
    "tutor_handoff_silence_gap_seconds",
    "Silence between the outgoing tutor's handoff line and the incoming tutor's first audio",
    ["mode"],
    buckets=GAP_BUCKETS,
)
CROSSING_FALLBACKS = Counter(
    "tutor_crossing_fallbacks_total",
    "Cross-worker handovers that fell back, by target tutor and reason",
    ["to_tutor", "reason"],
)
DUPLICATE_JOBS = Counter(
    "tutor_duplicate_jobs_total",
    "Jobs that found another tutor already serving their room and left without a word",
)
DISPATCH_RETRIES = Counter(
    "tutor_dispatch_retries_total",
    "Dispatch API attempts after the first, by target worker",
    ["target"],
)

# moderation and alerts
ALERTS = Counter(
    "tutor_alerts_total",
    "Alert deliveries by channel and outcome (delivered, retry, failed, unrouted)",
    ["channel", "outcome"],
)
MODERATION_VERDICTS = Counter(
    "tutor_moderation_verdicts_total",
    "Moderation checks by direction (student, tutor) and verdict (clean, concern, urgent, failed)",
    ["direction", "verdict"],
)
MODERATION_RETRIES = Counter(
    "tutor_moderation_retries_total",
    "Second tries of a moderation check whose first timed out or met an overloaded endpoint, "
    "by direction and the second try's verdict (failed: the turn was withheld)",
    ["direction", "verdict"],
)
MODERATION_LATENCY = Histogram(
    "tutor_moderation_seconds", "Time a moderation check took", ["direction"], buckets=CHECK_BUCKETS
)

# records
RECORDS_QUEUE_DEPTH = Gauge(
    "tutor_records_queue_depth",
    "Records waiting to be written to the records store",
    multiprocess_mode="livesum",
)
RECORDS_WRITTEN = Counter("tutor_records_written_total", "Records written to the records store")
RECORDS_WRITE_FAILURES = Counter(
    "tutor_records_write_failures_total", "Failed batch writes to the records store (retried)"
)
RECORDS_DROPPED = Counter(
    "tutor_records_dropped_total",
    "Records given up: the buffer was full, or still unwritten when the job ended",
)

# the worker
WORKER_OVERLOADED = Gauge(
    "tutor_worker_overloaded",
    "1 while the worker refuses new students because its processes use WORKER_CPU_LIMIT of "
    "its CPUs",
    multiprocess_mode="liveall",
)
WORKER_OVERLOADS = Counter(
    "tutor_worker_overloads_total", "Times the worker became overloaded and shed new students"
)
