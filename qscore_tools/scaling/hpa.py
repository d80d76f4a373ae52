"""The Kubernetes HPA algorithm for one external AverageValue metric, as KEDA configures it.

Follows pkg/controller/podautoscaler/horizontal.go (autoscaling/v2 with behavior):
1. desired = ceil(metric / target) unless |metric / (target * current) - 1| <= tolerance;
2. stabilization: the recommendation is bounded by the min of the recommendations in the
   scale-up window and the max of those in the scale-down window (the raw desired counts are
   recorded, one per sync);
3. rate limits: each policy allows a change relative to the replica count at the start of
   its period (current - added + removed within the period); selectPolicy picks among them;
4. the result is clamped to [minReplicas, maxReplicas].
Everything is pure: the caller passes the time; no clocks, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qscore_tools.scaling.config import ScalingRules

HPA_TOLERANCE = 0.1
HPA_SYNC_PERIOD_S = 15


def metric_desired_replicas(
    current: int, metric: float, target: float, *, tolerance: float = HPA_TOLERANCE
) -> int:
    """Replicas the metric asks for (AverageValue target), before behavior rules."""
    if current == 0:
        return 0
    usage_ratio = metric / (target * current)
    if abs(1.0 - usage_ratio) <= tolerance:
        return current
    return math.ceil(metric / target)


@dataclass(frozen=True)
class _Event:
    at_s: float
    change: int


@dataclass
class HpaController:
    """One HPA's memory (recommendations and scale events) and its sync step."""

    min_replicas: int
    max_replicas: int
    scale_up: ScalingRules
    scale_down: ScalingRules
    tolerance: float = HPA_TOLERANCE
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _up_events: list[_Event] = field(default_factory=list)
    _down_events: list[_Event] = field(default_factory=list)

    def sync(self, now_s: float, current: int, metric: float, target: float) -> int:
        """The replica count after one HPA sync; records the scale event if it changes."""
        return self.sync_metrics(now_s, current, [(metric, target)])

    def sync_metrics(
        self, now_s: float, current: int, metrics: list[tuple[float, float]], *, one_failed: bool = False
    ) -> int:
        """One sync over several metrics (KEDA: one per trigger): the HPA takes the largest
        replica count any metric asks for, then applies stabilization and rate limits. With
        `one_failed` (a metric could not be read: `metrics` holds the others) it scales up on
        what it has but never down, as the controller does."""
        raw = max(metric_desired_replicas(current, m, t, tolerance=self.tolerance) for m, t in metrics)
        if one_failed:
            raw = max(raw, current)
        stabilized = self._stabilize(now_s, current, raw)
        new = self._rate_limit(now_s, current, stabilized)
        new = max(self.min_replicas, min(self.max_replicas, new))
        if new > current:
            self._up_events.append(_Event(now_s, new - current))
        elif new < current:
            self._down_events.append(_Event(now_s, current - new))
        self._forget_old_events(now_s)
        return new

    def _stabilize(self, now_s: float, current: int, desired: int) -> int:
        up_cutoff = now_s - self.scale_up.stabilization_window_s
        down_cutoff = now_s - self.scale_down.stabilization_window_s
        up_rec, down_rec = desired, desired
        old_index: int | None = None
        for index, (at_s, rec) in enumerate(self._recommendations):
            if at_s > up_cutoff:
                up_rec = min(up_rec, rec)
            if at_s > down_cutoff:
                down_rec = max(down_rec, rec)
            if at_s < up_cutoff and at_s < down_cutoff:
                old_index = index
        recommendation = max(current, up_rec)
        recommendation = min(recommendation, down_rec)
        # Like the controller, reuse one expired slot instead of growing the list.
        if old_index is None:
            self._recommendations.append((now_s, desired))
        else:
            self._recommendations[old_index] = (now_s, desired)
        return recommendation

    def _rate_limit(self, now_s: float, current: int, desired: int) -> int:
        if desired > current:
            limit = max(current, self._scale_up_limit(now_s, current))
            return min(desired, self.max_replicas, limit)
        if desired < current:
            limit = min(current, self._scale_down_limit(now_s, current))
            return max(desired, self.min_replicas, limit)
        return desired

    def _period_start(self, now_s: float, current: int, period_s: int) -> int:
        cutoff = now_s - period_s
        added = sum(e.change for e in self._up_events if e.at_s > cutoff)
        removed = sum(e.change for e in self._down_events if e.at_s > cutoff)
        return current - added + removed

    def _scale_up_limit(self, now_s: float, current: int) -> int:
        rules = self.scale_up
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now_s, current, policy.period_s)
            if policy.type == "Pods":
                proposals.append(start + policy.value)
            else:
                # Rounded up, or a Percent policy could never add the first pod.
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return min(proposals) if rules.select_policy == "Min" else max(proposals)

    def _scale_down_limit(self, now_s: float, current: int) -> int:
        rules = self.scale_down
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(now_s, current, policy.period_s)
            if policy.type == "Pods":
                proposals.append(start - policy.value)
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        # "Max" means the biggest change, i.e. the lowest floor.
        return max(proposals) if rules.select_policy == "Min" else min(proposals)

    def _forget_old_events(self, now_s: float) -> None:
        longest = max((p.period_s for p in (*self.scale_up.policies, *self.scale_down.policies)), default=0)
        self._up_events = [e for e in self._up_events if e.at_s > now_s - longest]
        self._down_events = [e for e in self._down_events if e.at_s > now_s - longest]
