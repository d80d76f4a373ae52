"""The worker's telemetry calls in one place: a span per message (child of the producer's
traceparent), a batch span per Triton call (linked to every request span in it), the
traceparent its reply carries, and the scoring metrics from `qscore.telemetry`. The tracing
and metrics middleware (workers/middleware/tracing.py, metrics.py) make these calls.

Everything goes through `WorkerTelemetry` so tests (or a deployment without OpenTelemetry)
can pass `WorkerTelemetry(enabled=False)` and pay nothing per message. Spans cost about
0.1 ms each in the OpenTelemetry SDK, a third of the per-message budget at 3,000 msg/s, so
they are made only when traces go somewhere (OTLP or Application Insights) unless asked for.
Without spans a reply still carries the request's own traceparent, so the producer's trace
shows its reply arriving either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from qscore.contracts import ScoreReply
from qscore.telemetry import traces_exported as traces_exported
from qscore.transport import traceparent


class WorkerTelemetry:
    """Spans and metrics for the worker; every method is cheap and never raises into scoring."""

    def __init__(self, *, enabled: bool = True, spans: bool | None = None, queue: str | None = None) -> None:
        self.enabled = enabled
        self.spans = enabled and (traces_exported() if spans is None else spans)
        self._queue = queue
        self._metrics: Any = None
        self._held: Callable[[], int] = lambda: 0
        self._held_limit: Callable[[], int] = lambda: 0
        if enabled:
            from qscore.telemetry import scoring_metrics

            self._metrics = scoring_metrics()
            self._metrics.observe_in_flight(lambda: self._held(), lambda: self._held_limit())

    def watch_held(self, held: Any) -> None:
        """Report `held` (a session's HeldMessages: `.count`, `.limit`) as the in-flight gauges."""
        self._held = lambda: int(held.count)
        self._held_limit = lambda: int(held.limit)

    def start_message(self, message: Any) -> Any:
        """A span for one received request; ended by `finish_message`. None when disabled."""
        if not self.spans:
            return None
        from qscore.telemetry import start_message_span

        return start_message_span(
            "qscore.worker.process",
            getattr(message, "application_properties", None),
            queue=self._queue,
            message_id=getattr(message, "message_id", None),
        )

    def finish_message(self, span: Any, *, outcome: str) -> None:
        if span is not None:
            span.set_attribute("qscore.outcome", outcome)
            span.end()

    @contextlib.contextmanager
    def batch_span(self, model: str, version: str, spans: Sequence[Any]) -> Iterator[None]:
        """`qscore.worker.batch` around one Triton call, a root linked to each request's span."""
        if not self.spans:
            yield
            return
        from qscore.telemetry import batch_span

        attributes = {"qscore.model": model, "qscore.model_version": version}
        with batch_span("qscore.worker.batch", [s for s in spans if s is not None], attributes=attributes):
            yield

    def reply_traceparent(self, message: Any, span: Any) -> str | None:
        """The traceparent a reply carries: the worker's span when there is one, else the
        request's own (the producer's span), so the reply lands in the producer's trace."""
        if span is not None:
            from qscore.telemetry import span_traceparent

            own = span_traceparent(span)
            if own is not None:
                return own
        return traceparent(message)

    def replied(self, replies: Sequence[ScoreReply]) -> None:
        if self._metrics is None:
            return
        for reply in replies:
            code = reply.error.code if reply.error is not None else None
            self._metrics.record_reply(
                reply.model, reply.model_version, reply.status, reply.timings, error_code=code
            )

    def batch(self, model: str, version: str, size: int) -> None:
        if self._metrics is not None:
            self._metrics.record_batch(model, version, size)

    def dead_lettered(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.record_dead_letter(reason)

    def output_mismatch(self, model: str, version: str) -> None:
        if self._metrics is not None:
            self._metrics.record_output_mismatch(model, version)

    def abandoned(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.record_abandon(reason)
