"""Count-based vs metric-based scaling on the same traffic (`qscore scale-sim --compare`).

The count-based ScaledObject scales on the queue's active message count; a fleet that keeps
up shows almost none (messages are locked only while scored), so the HPA scales it in until
a backlog builds again, and so on: it oscillates under steady load. The metric-based variant
(deploy/components/keda-prometheus) adds KEDA's prometheus trigger on the workers' own
throughput and queue wait, which stays put while the fleet keeps up; the count trigger stays
beside it, so a burst still scales out at once (the HPA takes the larger of the two).

Both run with `active_time_s` set: the count KEDA would really read (see SimulationSettings).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from qscore_tools.scaling.config import ScalerSpec
from qscore_tools.scaling.simulator import SimulationResult, SimulationSettings, Timeline, simulate
from qscore_tools.scaling.traffic import Burst, Steady, TrafficShape

# Messages are locked while scored: queue-path p50 on the local bench is tens of milliseconds.
ACTIVE_TIME_S = 0.05
WARM_UP_S = 300  # replica changes are counted after this (both start at the same count)
BURST_PHASES = 12  # burst arrival times spread over the second and third quarter of the run


@dataclass(frozen=True)
class PolicyRun:
    """One policy on one traffic shape, with the figures the comparison prints."""

    policy: str
    traffic: str
    result: SimulationResult
    replica_changes: int
    replicas_low: int
    replicas_high: int
    # Bursts only: seconds from a burst's arrival until the queue is empty again, for the burst
    # at each of BURST_PHASES points in time (where in an oscillation it lands matters).
    burst_drains_s: tuple[int | None, ...] = ()

    @property
    def burst_drain_mean_s(self) -> float | None:
        drains = [d for d in self.burst_drains_s if d is not None]
        return sum(drains) / len(drains) if drains and len(drains) == len(self.burst_drains_s) else None

    @property
    def burst_drain_worst_s(self) -> int | None:
        drains = self.burst_drains_s
        return None if not drains or None in drains else max(d for d in drains if d is not None)


def replica_changes(timeline: Timeline, after_s: int) -> int:
    """How often the replica count changed after `after_s` (0 = held steady)."""
    replicas = timeline.replicas[after_s:]
    return sum(1 for before, now in itertools.pairwise(replicas) if before != now)


def drain_after(timeline: Timeline, at_s: int) -> int | None:
    """Seconds from `at_s` until the backlog is first under one message again; None: never."""
    for t, backlog in zip(timeline.t, timeline.backlog, strict=True):
        if t > at_s and backlog < 1:
            return t - at_s
    return None


def _figures(policy: str, shape: TrafficShape, result: SimulationResult, duration_s: int) -> PolicyRun:
    after = min(WARM_UP_S, duration_s - 1)
    replicas = result.timeline.replicas[after:]
    return PolicyRun(
        policy=policy,
        traffic=shape.describe(),
        result=result,
        replica_changes=replica_changes(result.timeline, after),
        replicas_low=min(replicas),
        replicas_high=max(replicas),
    )


def burst_times(duration_s: int, phases: int = BURST_PHASES) -> list[int]:
    """Arrival times for the burst, evenly over [duration/4, 3 duration/4)."""
    start, span = duration_s // 4, duration_s // 2
    return [start + span * index // phases for index in range(phases)]


def _burst_run(
    policy: str, spec: ScalerSpec, messages: int, rate: float, settings: SimulationSettings
) -> PolicyRun:
    times = burst_times(settings.duration_s)
    drains = []
    shown: SimulationResult | None = None
    for at_s in times:
        result = simulate(spec, Burst(messages, at_s=at_s, baseline_rate=rate), settings)
        drains.append(drain_after(result.timeline, at_s))
        if at_s == times[len(times) // 2]:
            shown = result
    assert shown is not None
    shape = Burst(messages, at_s=times[len(times) // 2], baseline_rate=rate)
    run = _figures(policy, shape, shown, settings.duration_s)
    return replace(run, burst_drains_s=tuple(drains))


def steady_replicas(spec: ScalerSpec, rate: float, per_replica_rate: float) -> int:
    """What the metric policy holds at `rate`: ceil(rate / threshold), within the bounds."""
    threshold = spec.prometheus.threshold if spec.prometheus else per_replica_rate
    return max(spec.min_replicas, min(spec.max_replicas, math.ceil(rate / threshold)))


def compare(
    count_spec: ScalerSpec,
    metric_spec: ScalerSpec,
    *,
    steady_rate: float,
    burst_messages: int,
    per_replica_rate: float,
    duration_s: int = 1_800,
    pod_startup_s: int = 20,
) -> list[PolicyRun]:
    """Both policies on a steady load and on the same load with a burst in the middle.

    Both start at the replica count the metric policy settles on, with warm metrics, so what
    differs is only what each does from there. The burst is simulated at BURST_PHASES arrival
    times (the drain time of an oscillating policy depends on where the burst lands); the run
    kept for the plot is the middle one.
    """
    start = steady_replicas(metric_spec, steady_rate, per_replica_rate)
    settings = SimulationSettings(
        duration_s=duration_s,
        per_replica_rate=per_replica_rate,
        pod_startup_s=pod_startup_s,
        initial_replicas=start,
        active_time_s=ACTIVE_TIME_S,
        warm_start=True,
    )
    policies = (("count-based", count_spec), ("metric-based", metric_spec))
    steady = Steady(steady_rate)
    runs = [_figures(p, steady, simulate(spec, steady, settings), duration_s) for p, spec in policies]
    runs += [_burst_run(p, spec, burst_messages, steady_rate, settings) for p, spec in policies]
    return runs
