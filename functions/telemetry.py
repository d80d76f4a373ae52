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
  producer's trace shows its request answered; the send itself is a batch span linked to those:
  made by `ReplySpans`, the tracing middleware's reply half (`before_reply` opens them,
  `after_reply` ends them with the outcome). The reply message carries that span's
  `traceparent`, so the producer records the reply's arrival in the same trace (as with the
  worker).

Export: `configure_from_environment()` (called by function_app.py) sends spans, metrics and
logs to Application Insights when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (and/or OTLP
when `OTEL_EXPORTER_OTLP_ENDPOINT` is); there is no Prometheus endpoint on the Functions app:
its instances come and go with the host's scaling and a scrape would reach one at random.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span

from functions.payloads import Envelope
from qscore.contracts import ErrorCode
from qscore.middleware import Middleware, Replied, ScoreBatch, ScoreResult
from qscore.middleware.call_spans import CallSpans
from qscore.telemetry import (
    batch_span,
    configure,
    extract_trace_context,
    reply_traceparent,
    start_message_span,
    traces_exported,
)
from qscore.telemetry.request_spans import end_request_span, scoring_call_span

REPLY_UNDELIVERABLE = ErrorCode.REPLY_UNDELIVERABLE.value


def configure_from_environment(service_name: str = "qscore-functions") -> bool:
    """Set up export when the environment names a destination; True when it did."""
    if not traces_exported():
        return False
    configure(service_name)
    return True


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
    with scoring_call_span(name, parents, model=model, version=version, route=route) as span:
        yield span


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


class ReplySpans(Middleware):
    """A CONSUMER span `qscore.functions.reply` per queue request being replied to (child of its
    producer span, and linked to it) and `qscore.functions.send_replies` around the send, linked
    to those, as middleware: `before_reply` opens them and gives each reply its span's
    traceparent (`qscore.telemetry.reply_traceparent`, as the worker's tracing middleware does),
    `after_reply` ends them with the outcome (`replied`, or `reply_undeliverable` for a reply the
    broker refused). Opened and ended within one delivery activity invocation; several may run at
    once in one process, so each send span is found again by its requests' ids."""

    def __init__(self) -> None:
        self._spans: dict[str, Span] = {}  # request id -> its open reply span
        self._sends: dict[str, contextlib.ExitStack] = {}  # request id -> its send's open span

    async def before_reply(self, replying: Sequence[Any]) -> list[Any] | None:
        if not replying:
            return None
        spans = [
            start_message_span(
                "qscore.functions.reply",
                trace_properties(each.message),
                queue=each.address.queue,
                message_id=each.message.message_id,
                attributes={"qscore.origin": each.message.origin},
            )
            for each in replying
        ]
        send = contextlib.ExitStack()
        send.enter_context(batch_span("qscore.functions.send_replies", spans))
        for each, span in zip(replying, spans, strict=True):
            self._spans[each.message.message_id] = span
            self._sends[each.message.message_id] = send
        return [
            dataclasses.replace(each.address, traceparent=reply_traceparent(span, each.message.traceparent))
            for each, span in zip(replying, spans, strict=True)
        ]

    async def after_reply(self, replied: Replied) -> None:
        handled = [(each, "replied") for each in replied.sent]
        handled += [(each, REPLY_UNDELIVERABLE) for each in replied.unsent]
        sends = {
            id(send): send for each, _ in handled if (send := self._sends.pop(each.message.message_id, None))
        }
        for send in sends.values():
            send.close()
        for each, outcome in handled:
            span = self._spans.pop(each.message.message_id, None)
            if span is not None:
                end_request_span(span, outcome)
