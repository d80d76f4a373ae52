"""The scoring metrics as middleware, run by both runtimes (`qscore.telemetry.ScoringRecorder`):
replies by model/version/status with their timings (`after_reply`), batch sizes and model results
that did not fit their batch (`after_score`), dead-letters and abandons by reason, one per
message (`after_settle`; the Functions app's failure records count as dead-letters)."""

from __future__ import annotations

from qscore.middleware.base import Middleware, Replied, ScoreResult, Settled
from qscore.scoring import ModelOutputMismatch
from qscore.telemetry.recorder import ScoringRecorder
from qscore.transport.settle_outcomes import ABANDONED, DEAD_LETTERED


class MetricsMiddleware(Middleware):
    def __init__(self, recorder: ScoringRecorder) -> None:
        self._recorder = recorder

    async def after_score(self, result: ScoreResult) -> None:
        batch = result.batch
        if result.scored is not None:
            self._recorder.batch(batch.model, batch.version, len(batch.requests))
        elif isinstance(result.error, ModelOutputMismatch):
            self._recorder.output_mismatch(batch.model, batch.version)

    async def after_reply(self, replied: Replied) -> None:
        if replied.sent:
            self._recorder.replied([each.reply for each in replied.sent])

    async def after_settle(self, settled: Settled) -> None:
        if settled.outcome == ABANDONED:
            for _ in settled.messages:
                self._recorder.abandoned(settled.reason or "unknown")
        elif settled.outcome == DEAD_LETTERED and not settled.refused:
            for _ in settled.messages:
                self._recorder.dead_lettered(settled.reason or "unknown")
