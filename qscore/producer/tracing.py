"""W3C trace context for outgoing requests (qscore.telemetry; a no-op until it is configured)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qscore.telemetry import inject_trace_context, producer_span, start_message_span, trace_carrier


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


def reply_received(properties: Mapping[Any, Any] | None, *, queue: str, request_id: str) -> None:
    """A CONSUMER span marking a reply's arrival, child of the worker span whose traceparent the
    reply carries, so the request's trace ends with its reply arriving at the producer. A reply
    without a traceparent (an older worker) records nothing."""
    if not trace_carrier(properties):
        return
    span = start_message_span("qscore.producer reply", properties, queue=queue, message_id=request_id)
    span.end()
