"""The scoring metrics calls both runtimes make, through one adapter: replies by model, version
and status with their timings, Triton batch sizes, dead-letters and abandons by reason, model
results that did not fit their batch. The metrics middleware (qscore/middleware/metrics.py)
makes these calls in the worker and the Functions app alike.

Every method is cheap and never raises into scoring; `ScoringRecorder(enabled=False)` records
nothing. The worker's `WorkerTelemetry` (workers/telemetry.py) is this recorder plus its spans
and in-flight gauges.
"""

from __future__ import annotations

from collections.abc import Sequence

from qscore.contracts import ScoreReply
from qscore.telemetry.metrics import ScoringMetrics, scoring_metrics


class ScoringRecorder:
    """Scoring metrics through `qscore.telemetry.scoring_metrics()` (looked up per call, so a
    long-lived process follows a reconfiguration; the worker's subclass keeps its own)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def instruments(self) -> ScoringMetrics | None:
        return scoring_metrics() if self.enabled else None

    def replied(self, replies: Sequence[ScoreReply]) -> None:
        metrics = self.instruments()
        if metrics is None:
            return
        metrics.record_replies(
            (
                reply.model,
                reply.model_version or "",
                reply.status,
                reply.timings,
                reply.error.code if reply.error is not None else None,
            )
            for reply in replies
        )

    def batch(self, model: str, version: str, size: int) -> None:
        metrics = self.instruments()
        if metrics is not None:
            metrics.record_batch(model, version, size)

    def dead_lettered(self, reason: str) -> None:
        metrics = self.instruments()
        if metrics is not None:
            metrics.record_dead_letter(reason)

    def output_mismatch(self, model: str, version: str) -> None:
        metrics = self.instruments()
        if metrics is not None:
            metrics.record_output_mismatch(model, version)

    def abandoned(self, reason: str) -> None:
        metrics = self.instruments()
        if metrics is not None:
            metrics.record_abandon(reason)
