"""W3C trace context for outgoing requests (qscore.telemetry; a no-op until it is configured)."""

from __future__ import annotations

from qscore.telemetry import inject_trace_context, producer_span


def request_traceparent(*, queue: str, request_id: str) -> str | None:
    """A PRODUCER span for one request; returns its `traceparent` for the message.

    Each request gets its own span (so its own trace through worker and Triton). Without a
    configured tracer provider the span is not recording and None comes back: an untraced
    producer sends no trace property.
    """
    with producer_span("qscore.send", queue=queue, message_id=request_id):
        carrier: dict[str, str] = {}
        inject_trace_context(carrier)
    return carrier.get("traceparent")
