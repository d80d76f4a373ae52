"""The worker's telemetry calls in one place: a span per message (child of the producer's
traceparent) and the scoring metrics from `qscore.telemetry`.

Everything goes through `WorkerTelemetry` so tests (or a deployment without OpenTelemetry)
can pass `WorkerTelemetry(enabled=False)` and pay nothing per message. Spans cost about
0.1 ms each in the OpenTelemetry SDK, a third of the per-message budget at 3,000 msg/s, so
they are made only when traces go somewhere (an OTLP endpoint is set) unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from qscore.contracts import ScoreReply


def traces_exported() -> bool:
    """Whether `qscore.telemetry.configure` will export spans (an OTLP endpoint is set)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class WorkerTelemetry:
    """Spans and metrics for the worker; every method is cheap and never raises into scoring."""

    def __init__(self, *, enabled: bool = True, spans: bool | None = None, queue: str | None = None) -> None:
        self.enabled = enabled
        self.spans = enabled and (traces_exported() if spans is None else spans)
        self._queue = queue
        self._metrics: Any = None
        if enabled:
            from qscore.telemetry import scoring_metrics

            self._metrics = scoring_metrics()

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

    def abandoned(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.record_abandon(reason)
