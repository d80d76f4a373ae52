"""W3C trace context for outgoing requests (qscore.telemetry; a no-op until it is configured)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from qscore.telemetry import inject_trace_context, producer_span, start_message_span, trace_carrier, tracer


def _no_tracer() -> bool:
    """No tracer provider is configured: every span would be a non-recording no-op. Checked per
    call (cheap: the tracer is cached per provider), so configuring tracing later takes effect."""
    return isinstance(tracer(), trace.NoOpTracer | trace.ProxyTracer)


def request_traceparent(*, queue: str, request_id: str) -> str | None:
    """A PRODUCER span for one request; returns its `traceparent` for the message.

    Each request gets its own span (so its own trace through worker and Triton). Without a
    configured tracer provider the span is not recording and None comes back: an untraced
    producer sends no trace property. (Nor does it pay for the no-op span, ~10 us a request:
    with no tracer and no valid current span the answer is None without building it.)
    """
    if _no_tracer() and not trace.get_current_span().get_span_context().is_valid:
        return None
    with producer_span("qscore.send", queue=queue, message_id=request_id):
        carrier: dict[str, str] = {}
        inject_trace_context(carrier)
    return carrier.get("traceparent")


def reply_received(properties: Mapping[Any, Any] | None, *, queue: str, request_id: str) -> None:
    """A CONSUMER span marking a reply's arrival, child of the worker span whose traceparent the
    reply carries, so the request's trace ends with its reply arriving at the producer. A reply
    without a traceparent (an older worker), or a producer without a tracer, records nothing."""
    if _no_tracer() or not trace_carrier(properties):
        return
    span = start_message_span("qscore.producer reply", properties, queue=queue, message_id=request_id)
    span.end()
