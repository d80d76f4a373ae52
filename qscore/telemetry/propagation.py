"""W3C trace context on Service Bus application properties.

The producer writes `traceparent` (and `tracestate` when there is one) into the message's
application properties; a worker reads them back to parent its spans to the producer's.
The azure-servicebus SDK hands received application properties back with bytes keys and
often bytes values, so extraction decodes both. Azure SDK's own tracing writes the same W3C
value under `Diagnostic-Id`; it is accepted as a fallback so messages from such producers
still join their trace.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from qscore.wire_text import wire_text

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
AZURE_DIAGNOSTIC_ID = "Diagnostic-Id"

_propagator = TraceContextTextMapPropagator()


def inject_trace_context(properties: MutableMapping[Any, Any], context: Context | None = None) -> None:
    """Write the current (or given) span's W3C trace context into `properties` as str values.

    Nothing is written when there is no valid span, so untraced producers add no properties.
    """
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    properties.update(carrier)


def span_traceparent(span: Any) -> str | None:
    """The W3C traceparent naming `span` (for a message sent on its behalf, e.g. a reply);
    None when the span is not valid (tracing off). The string the propagator's `inject` writes,
    formatted here without the context and carrier it builds for it (once per message)."""
    from opentelemetry import trace

    context = span.get_span_context()
    if context == trace.INVALID_SPAN_CONTEXT:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def reply_traceparent(span: Any, request_traceparent: str | None) -> str | None:
    """The traceparent a reply carries, in both runtimes: the span made for its request when
    there is one, else the request's own (the producer's span), so the producer's trace shows
    the reply arriving either way."""
    own = span_traceparent(span) if span is not None else None
    return own if own is not None else request_traceparent


def trace_carrier(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """The trace-context properties of a message with str keys and values."""
    carrier: dict[str, str] = {}
    for key, value in (properties or {}).items():
        name = wire_text(key)
        if name.lower() in (TRACEPARENT, TRACESTATE):
            carrier[name.lower()] = wire_text(value)
        elif name == AZURE_DIAGNOSTIC_ID:
            carrier.setdefault(TRACEPARENT, wire_text(value))
    return carrier


def extract_trace_context(properties: Mapping[Any, Any] | None) -> Context:
    """The producer's context from a message's application properties (bytes or str keys).

    A missing or malformed traceparent gives an empty context: the worker then starts a new
    trace instead of failing the message.
    """
    return _propagator.extract(trace_carrier(properties))
