"""Traffic shapes: messages arriving per one-second step of the simulation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class TrafficShape(Protocol):
    """Messages that arrive during second [t, t+1), and the figures the search needs."""

    def arrivals(self, t: int) -> float: ...

    def peak_rate(self) -> float:
        """Highest arrival rate (messages/s) the shape reaches; a burst counts as one second."""
        ...

    def base_rate(self) -> float:
        """Lowest sustained arrival rate (messages/s)."""
        ...

    def demand_rate(self, target_age_s: float) -> float:
        """Messages/s the workers must complete so that no message waits over target_age_s."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Burst:
    """`messages` all arrive in second `at_s`, on top of a steady `baseline_rate`."""

    messages: int
    at_s: int = 0
    baseline_rate: float = 0.0

    def arrivals(self, t: int) -> float:
        return self.baseline_rate + (self.messages if t == self.at_s else 0.0)

    def peak_rate(self) -> float:
        return self.baseline_rate + self.messages

    def base_rate(self) -> float:
        return self.baseline_rate

    def demand_rate(self, target_age_s: float) -> float:
        return self.baseline_rate + self.messages / target_age_s

    def describe(self) -> str:
        return f"burst of {self.messages} messages at t={self.at_s}s (+{self.baseline_rate:g}/s)"


@dataclass(frozen=True)
class Ramp:
    """Rate grows linearly from `start_rate` to `peak_rate` over `ramp_s`, holds `hold_s`, stops."""

    start_rate: float
    peak: float
    ramp_s: int
    hold_s: int = 0

    def arrivals(self, t: int) -> float:
        if t < self.ramp_s:
            # Rate at the middle of the second: the integral over [t, t+1) of a linear ramp.
            return self.start_rate + (self.peak - self.start_rate) * (t + 0.5) / self.ramp_s
        if t < self.ramp_s + self.hold_s:
            return self.peak
        return 0.0

    def peak_rate(self) -> float:
        return self.peak

    def base_rate(self) -> float:
        return self.start_rate

    def demand_rate(self, target_age_s: float) -> float:
        return self.peak

    def describe(self) -> str:
        return f"ramp {self.start_rate:g} -> {self.peak:g}/s over {self.ramp_s}s, hold {self.hold_s}s"


@dataclass(frozen=True)
class Diurnal:
    """A day-shaped cycle: min at t=0, peak at half the period (period shortened for tests)."""

    min_rate: float
    peak: float
    period_s: int = 86_400

    def arrivals(self, t: int) -> float:
        phase = (1 - math.cos(2 * math.pi * (t + 0.5) / self.period_s)) / 2
        return self.min_rate + (self.peak - self.min_rate) * phase

    def peak_rate(self) -> float:
        return self.peak

    def base_rate(self) -> float:
        return self.min_rate

    def demand_rate(self, target_age_s: float) -> float:
        return self.peak

    def describe(self) -> str:
        return f"diurnal {self.min_rate:g} .. {self.peak:g}/s, period {self.period_s}s"


@dataclass(frozen=True)
class Steady:
    """`rate` messages every second."""

    rate: float

    def arrivals(self, t: int) -> float:
        return self.rate

    def peak_rate(self) -> float:
        return self.rate

    def base_rate(self) -> float:
        return self.rate

    def demand_rate(self, target_age_s: float) -> float:
        return self.rate

    def describe(self) -> str:
        return f"steady {self.rate:g}/s"
