"""Telemetry from the activities through `qscore.telemetry`: metrics, and spans tied to each
request's producer trace (the orchestrator records none: it replays, and a replayed
orchestrator would count and trace everything again).

The producer's `traceparent` travels from the trigger (the message's application properties)
through the orchestration input and each request's envelope in the stored documents
(`Envelope.traceparent`) to the activities, which:
- score: one span per Triton call (`batch_span`), linked to every request's producer span: made
  by `InferSpans`, the tracing middleware in the app's stack (`before_score` opens it,
  `after_score` ends it, recording a failed call's error), as the worker's tracing middleware
  makes its batch span; the shadow activity's span is made around its call (no hooks run there);
- reply: one CONSUMER span per request, child of its producer span (and linked to it), so the
  producer's trace shows its request answered; the send itself is a batch span linked to those.
  The reply message carries that span's `traceparent`, so the producer records the reply's
  arrival in the same trace (as with the worker).

Export: `configure_from_environment()` (called by function_app.py) sends spans, metrics and
logs to Application Insights when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (and/or OTLP
when `OTEL_EXPORTER_OTLP_ENDPOINT` is); there is no Prometheus endpoint on the Functions app:
its instances come and go with the host's scaling and a scrape would reach one at random.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span

from functions.payloads import Envelope
from qscore.middleware import Middleware, ScoreBatch, ScoreResult
from qscore.middleware.call_spans import CallSpans
from qscore.telemetry import (
    batch_span,
    configure,
    extract_trace_context,
    start_message_span,
    traces_exported,
)
from qscore.telemetry import reply_traceparent as traceparent_of_reply


def configure_from_environment(service_name: str = "qscore-functions") -> bool:
    """Set up export when the environment names a destination; True when it did."""
    if not traces_exported():
        return False
    configure(service_name)
    return True


def reply_traceparent(spans: dict[str, Span], message: Envelope) -> str | None:
    """The traceparent a reply carries (`qscore.telemetry.reply_traceparent`, as the worker's):
    its reply span's, else the request's own."""
    return traceparent_of_reply(spans.get(message.message_id), message.traceparent)


def trace_properties(message: Envelope) -> dict[str, str]:
    """The request's trace context as message properties (empty when its producer sent none)."""
    properties: dict[str, str] = {}
    if message.traceparent:
        properties["traceparent"] = message.traceparent
    if message.tracestate:
        properties["tracestate"] = message.tracestate
    return properties


@contextmanager
def scoring_span(
    name: str, messages: Sequence[Envelope], *, model: str, version: str, route: str
) -> Iterator[Span]:
    """One Triton call for many requests, linked to each request's producer span."""
    parents = [extract_trace_context(trace_properties(message)) for message in messages]
    attributes: dict[str, Any] = {
        "qscore.model": model,
        "qscore.model_version": version,
        "qscore.route": route,
    }
    with batch_span(name, parents, attributes=attributes) as span:
        yield span


def start_reply_spans(messages: Sequence[Envelope], *, queue_of: dict[str, str]) -> dict[str, Span]:
    """A CONSUMER span per request being replied to, child of its producer span; end them with
    `finish_reply_spans` once the send is done."""
    return {
        message.message_id: start_message_span(
            "qscore.functions.reply",
            trace_properties(message),
            queue=queue_of.get(message.message_id),
            message_id=message.message_id,
            attributes={"qscore.origin": message.origin},
        )
        for message in messages
    }


def finish_reply_spans(spans: dict[str, Span], *, outcome: str) -> None:
    for span in spans.values():
        span.set_attribute("qscore.outcome", outcome)
        span.end()


class InferSpans(Middleware):
    """`qscore.functions.infer` around each Triton call of the inference activity, as middleware:
    first in the app's stack, so the span wraps the other middleware's score hooks (as the
    worker's tracing middleware does). Opened and ended within one activity invocation."""

    def __init__(self) -> None:
        self._calls = CallSpans()

    async def before_score(self, batch: ScoreBatch) -> None:
        routes = {request.prepared.route for request in batch.requests}
        span = scoring_span(
            "qscore.functions.infer",
            [request.message for request in batch.requests],
            model=batch.model,
            version=batch.version,
            route=routes.pop() if len(routes) == 1 else "mixed",
        )
        self._calls.begin(batch, span)

    async def after_score(self, result: ScoreResult) -> None:
        self._calls.end(result)
