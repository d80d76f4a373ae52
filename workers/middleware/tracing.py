"""Spans: one per received request (a child of the producer's traceparent), one per Triton call
(`qscore.worker.batch`, a root linked to every request span in it), ended with the request's
outcome; the reply carries the request span's traceparent (workers/telemetry.py makes them).

The worker adds this middleware only when spans are on (`WorkerTelemetry.spans`): without it a
reply still carries the request's own traceparent and no span costs anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qscore.middleware import Middleware, ScoreBatch, ScoreResult, Settled
from qscore.middleware.call_spans import CallSpans
from qscore.transport.settle_outcomes import COMPLETED, DEAD_LETTERED
from workers.batch_items import MessageItem
from workers.held import HeldRequest
from workers.telemetry import WorkerTelemetry


def span_outcome(settled: Settled) -> str:
    """The `qscore.outcome` a request span ends with."""
    if settled.outcome == COMPLETED:
        return "replied"  # a request is completed only after its reply was sent
    if settled.outcome == DEAD_LETTERED:
        return f"dead_lettered:{settled.reason}"
    return "reply_send_failed" if settled.reason == "reply_send_failed" else "abandoned"


class TracingMiddleware(Middleware):
    def __init__(self, telemetry: WorkerTelemetry) -> None:
        self._telemetry = telemetry
        self._spans: dict[int, Any] = {}  # id(message) -> its open span, until it is settled
        self._calls = CallSpans()  # ScoreBatch.call -> its open batch span

    async def after_validate(self, request: HeldRequest) -> None:
        if isinstance(request.message, MessageItem):
            return  # items of a request-batch message have no span of their own
        span = self._telemetry.start_message(request.message)
        if span is None:
            return
        request.span = span
        self._spans[id(request.message)] = span
        parent = self._telemetry.reply_traceparent(request.message, span)
        request.address = dataclasses.replace(request.address, traceparent=parent)

    async def before_score(self, batch: ScoreBatch) -> None:
        spans = [request.span for request in batch.requests]
        self._calls.begin(batch, self._telemetry.batch_span(batch.model, batch.version, spans))

    async def after_score(self, result: ScoreResult) -> None:
        self._calls.end(result)

    async def after_settle(self, settled: Settled) -> None:
        if not self._spans:
            return
        outcome = span_outcome(settled)
        for message in settled.messages:
            span = self._spans.pop(id(message), None)
            if span is not None:
                self._telemetry.finish_message(span, outcome=outcome)
