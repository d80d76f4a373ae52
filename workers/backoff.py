"""Exponential backoff for transient faults (Triton down, broker hiccups), so the worker does not spin."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from qscore.backoff import backoff_delay


@dataclass
class Backoff:
    """Each `failure()` doubles the pause (with jitter) up to `max_s`; `success()` resets it.

    `paused` stays true until the current pause is over; the receive loop stops fetching
    messages meanwhile, and readiness reports false.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.2
    failures: int = 0
    resume_at: float = field(default=0.0)
    reason: str = ""

    def failure(self, reason: str) -> float:
        """Record a transient fault; returns the pause it starts (seconds).

        Faults reported during a pause (every in-flight batch fails at once when Triton goes
        down) count once, so the pause grows per outage attempt, not per batch.
        """
        if self.paused:
            return self.remaining_s()
        delay = backoff_delay(self.initial_s, self.failures + 1, cap=self.max_s)
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        self.failures += 1
        self.reason = reason
        self.resume_at = max(self.resume_at, time.monotonic() + delay)
        return delay

    def success(self) -> None:
        self.failures = 0
        self.reason = ""
        self.resume_at = 0.0

    @property
    def paused(self) -> bool:
        return self.failures > 0 and time.monotonic() < self.resume_at

    @property
    def failing(self) -> bool:
        """A fault was seen and no success since."""
        return self.failures > 0

    def remaining_s(self) -> float:
        return max(0.0, self.resume_at - time.monotonic())
