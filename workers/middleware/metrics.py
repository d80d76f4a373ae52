"""The scoring metrics (`qscore.telemetry.ScoringMetrics`, through WorkerTelemetry): replies by
model/version/status with their timings, batch sizes, dead-letters and abandons by reason, Triton
results that did not fit their batch.

Always in the stack; with `WorkerTelemetry(enabled=False)` every call returns at once.
"""

from __future__ import annotations

from qscore.middleware import Middleware, Replied, ScoreResult, Settled
from qscore.scoring import ModelOutputMismatch
from qscore.transport.settle_outcomes import ABANDONED, DEAD_LETTERED
from workers.telemetry import WorkerTelemetry


class MetricsMiddleware(Middleware):
    def __init__(self, telemetry: WorkerTelemetry) -> None:
        self._telemetry = telemetry

    async def after_score(self, result: ScoreResult) -> None:
        batch = result.batch
        if result.scored is not None:
            self._telemetry.batch(batch.model, batch.version, len(batch.requests))
        elif isinstance(result.error, ModelOutputMismatch):
            self._telemetry.output_mismatch(batch.model, batch.version)

    async def after_reply(self, replied: Replied) -> None:
        if replied.sent:
            self._telemetry.replied([each.reply for each in replied.sent])

    async def after_settle(self, settled: Settled) -> None:
        if settled.outcome == ABANDONED:
            for _ in settled.messages:
                self._telemetry.abandoned(settled.reason or "unknown")
        elif settled.outcome == DEAD_LETTERED and not settled.refused:
            self._telemetry.dead_lettered(settled.reason or "unknown")
