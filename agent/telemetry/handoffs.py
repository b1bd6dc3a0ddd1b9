"""Where every handoff is accounted for: one metric, one span and one record each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from livekit.agents.telemetry import tracer

from agent.telemetry import metrics

if TYPE_CHECKING:
    from agent.conversation.state import HandoffNote, SessionUserdata


def handoff_finished(
    userdata: SessionUserdata,
    note: HandoffNote,
    outcome: str,
    *,
    ready_after: float | None = None,
) -> None:
    """Count, trace and record a handoff that reached `outcome`."""
    metrics.HANDOFFS.labels(note.mode, note.from_tutor, note.to_tutor, outcome).inc()
    span = tracer.start_span(
        "tutor.handoff",
        start_time=int(note.requested_at * 1e9),
        attributes={
            "tutor.session_id": userdata.session_id,
            "tutor.handoff_id": note.handoff_id,
            "tutor.handoff.from": note.from_tutor,
            "tutor.handoff.to": note.to_tutor,
            "tutor.handoff.mode": note.mode,
            "tutor.handoff.outcome": outcome,
        },
    )
    if ready_after is not None:
        span.set_attribute("tutor.handoff.ready_after_s", ready_after)
    span.end()
    if userdata.recorder is not None:
        userdata.recorder.handoff(note, outcome, ready_after=ready_after)


def handoff_gap(userdata: SessionUserdata, note: HandoffNote, seconds: float) -> None:
    """The silence between the handoff line and the incoming tutor's first audio."""
    metrics.HANDOFF_SILENCE_GAP.labels(note.mode).observe(seconds)
    if userdata.recorder is not None:
        userdata.recorder.handoff_gap(note, seconds)
