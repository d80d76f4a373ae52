"""Spans along producer -> queue -> worker -> Triton -> reply.

- `producer_span`: the producer's send; inject its context into the message inside it.
- `start_message_span` / `message_span`: one received request. Its parent is the producer's
  span (taken from the message's traceparent) so one trace covers the request end to end;
  it also carries a link to that context, which is what the messaging conventions use when
  a backend shows the consumer as its own trace.
- `batch_span`: one Triton call for many requests; a batch has many parents, so it links to
  each request's span instead of choosing one.

Attribute names follow OpenTelemetry's messaging semantic conventions where one exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import AttributeValue

from qscore.telemetry.propagation import extract_trace_context
from qscore.telemetry.setup import tracer

MESSAGING_SYSTEM = "servicebus"
# Links are cheap but a backend caps them per span; a batch never needs more than this.
MAX_BATCH_LINKS = 128


def _messaging_attributes(
    *, queue: str | None, message_id: str | None, operation: str
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
    }
    if queue:
        attributes["messaging.destination.name"] = queue
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


@contextmanager
def producer_span(
    name: str = "qscore.send", *, queue: str | None = None, message_id: str | None = None
) -> Iterator[Span]:
    """A PRODUCER span around sending one request; call `inject_trace_context` inside it."""
    attributes = _messaging_attributes(queue=queue, message_id=message_id, operation="send")
    with tracer().start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield span


def start_message_span(
    name: str,
    properties: Mapping[Any, Any] | None,
    *,
    queue: str | None = None,
    message_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Span:
    """A CONSUMER span for a received message, child of the producer's span; the caller ends it.

    For work that outlives one `with` block (the request waits in the micro-batcher), keep the
    span on the item and `span.end()` when its reply is sent.
    """
    producer_context = extract_trace_context(properties)
    producer = trace.get_current_span(producer_context).get_span_context()
    links = [Link(producer)] if producer.is_valid else []
    merged = _messaging_attributes(queue=queue, message_id=message_id, operation="process")
    merged.update(attributes or {})
    return tracer().start_span(
        name, context=producer_context, kind=SpanKind.CONSUMER, attributes=merged, links=links
    )


@contextmanager
def message_span(
    name: str,
    properties: Mapping[Any, Any] | None,
    *,
    queue: str | None = None,
    message_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """`start_message_span` as the current span for the duration of a `with` block."""
    span = start_message_span(name, properties, queue=queue, message_id=message_id, attributes=attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def _span_context_of(parent: Span | Context) -> trace.SpanContext:
    if isinstance(parent, Span):
        return parent.get_span_context()
    return trace.get_current_span(parent).get_span_context()


@contextmanager
def batch_span(
    name: str,
    parents: Sequence[Span | Context],
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A span for work done once for many requests (a Triton call), linked to each request."""
    contexts = [_span_context_of(parent) for parent in parents[:MAX_BATCH_LINKS]]
    links = [Link(context) for context in contexts if context.is_valid]
    merged: dict[str, AttributeValue] = {"messaging.batch.message_count": len(parents)}
    merged.update(attributes or {})
    # A new root: its duration belongs to no single request, and its links tie it to all of them.
    with tracer().start_as_current_span(
        name, context=Context(), kind=SpanKind.INTERNAL, attributes=merged, links=links
    ) as span:
        yield span
