"""The worker's telemetry calls in one place: a span per message (child of the producer's
traceparent), a batch span per Triton call (linked to every request span in it), the
traceparent its reply carries, and the scoring metrics (the core's `ScoringRecorder`, which
the Functions app uses too). The tracing middleware (workers/middleware/tracing.py) and the
core's metrics middleware (qscore/middleware/metrics.py) make these calls. What goes on the
call span and how a request span ends is the core's, shared with the Functions app
(`qscore.telemetry.request_spans`).

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

from qscore.telemetry import traces_exported as traces_exported
from qscore.telemetry.metrics import ScoringMetrics
from qscore.telemetry.recorder import ScoringRecorder
from qscore.transport import traceparent
from qscore.transport.received import message_property


class WorkerTelemetry(ScoringRecorder):
    """Spans and metrics for the worker; every method is cheap and never raises into scoring.
    The metrics calls are the core's `ScoringRecorder` (the Functions app's too), with the
    instruments looked up once."""

    def __init__(self, *, enabled: bool = True, spans: bool | None = None, queue: str | None = None) -> None:
        super().__init__(enabled=enabled)
        self.spans = enabled and (traces_exported() if spans is None else spans)
        self._queue = queue
        self._metrics: ScoringMetrics | None = None
        self._held: Callable[[], int] = lambda: 0
        self._held_limit: Callable[[], int] = lambda: 0
        if enabled:
            from qscore.telemetry import scoring_metrics

            self._metrics = scoring_metrics()
            self._metrics.observe_in_flight(lambda: self._held(), lambda: self._held_limit())

    def instruments(self) -> ScoringMetrics | None:
        return self._metrics

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
            message_id=message_property(message, "message_id"),
        )

    def finish_message(self, span: Any, *, outcome: str) -> None:
        if span is not None:
            from qscore.telemetry.request_spans import end_request_span

            end_request_span(span, outcome)

    @contextlib.contextmanager
    def batch_span(self, model: str, version: str, spans: Sequence[Any]) -> Iterator[None]:
        """`qscore.worker.batch` around one Triton call, a root linked to each request's span."""
        if not self.spans:
            yield
            return
        from qscore.telemetry.request_spans import scoring_call_span

        parents = [s for s in spans if s is not None]
        with scoring_call_span("qscore.worker.batch", parents, model=model, version=version):
            yield

    def reply_traceparent(self, message: Any, span: Any) -> str | None:
        """The traceparent a reply carries (`qscore.telemetry.reply_traceparent`, as the
        Functions app's): the worker's span when there is one, else the request's own."""
        from qscore.telemetry import reply_traceparent, span_traceparent

        # The same choice as reply_traceparent's, reading the request's own only when it is needed.
        own = span_traceparent(span) if span is not None else None
        return own if own is not None else reply_traceparent(None, traceparent(message))
