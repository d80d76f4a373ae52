"""Job accounting (KEDA ScaledJob, workers/job.py): what was taken and finished, and the stop
once the job's share is settled. The receive loop reads the same `JobLimits` to size receives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qscore.middleware import Middleware, Settled
from workers.job import JobLimits
from workers.signals import StopRequest


class JobsMiddleware(Middleware):
    def __init__(self, job: JobLimits, stop: StopRequest) -> None:
        self.job = job
        self._stop = stop

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        self.job.took(len(messages))

    async def after_settle(self, settled: Settled) -> None:
        if not settled.messages:
            return
        self.job.settled(settled.outcome, len(settled.messages))
        if self.job.done and not self._stop.is_set:
            self._stop.request(self.job.exit_reason() or "job done")
