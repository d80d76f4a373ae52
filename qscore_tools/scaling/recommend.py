"""Search for a messageCount and replica bounds that meet a target queue age, cheapest first.

Reasoning behind the grid: at steady state KEDA keeps about messageCount messages per
replica, so a message waits about messageCount / per_replica_rate seconds; the target is
therefore rate x target_age scaled by a few fractions (lower = more headroom for start-up
and polling delays). maxReplicaCount must cover the peak arrival rate (a burst must be
served within the target age) with 25% headroom; minReplicaCount candidates are 0, 1, the
count the base rate needs, and the current setting. Each candidate is simulated; the one
meeting the target with the fewest replica-seconds wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from qscore_tools.scaling.config import ScalerSpec
from qscore_tools.scaling.simulator import SimulationResult, SimulationSettings, simulate
from qscore_tools.scaling.traffic import TrafficShape

MESSAGE_COUNT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
MAX_REPLICA_HEADROOM = 1.25


@dataclass(frozen=True)
class Recommendation:
    message_count: int
    min_replicas: int
    max_replicas: int
    meets_target: bool
    result: SimulationResult
    candidates_tried: int


def _round_2_significant(value: float) -> int:
    if value < 10:
        return max(1, round(value))
    digits = math.floor(math.log10(value)) - 1
    return int(round(value, -digits))


def candidate_grid(
    spec: ScalerSpec, traffic: TrafficShape, per_replica_rate: float, target_age_s: float
) -> list[tuple[int, int, int]]:
    """(messageCount, minReplicaCount, maxReplicaCount) triples to try, deduplicated."""
    counts = sorted(
        {_round_2_significant(per_replica_rate * target_age_s * f) for f in MESSAGE_COUNT_FRACTIONS}
    )
    # A burst of N messages must be served within the target age: N / (rate x age) replicas.
    peak_demand = traffic.demand_rate(target_age_s) / per_replica_rate
    max_replicas = max(1, math.ceil(peak_demand * MAX_REPLICA_HEADROOM))
    base_need = math.ceil(traffic.base_rate() / per_replica_rate)
    mins = sorted({0, 1, min(base_need, max_replicas), min(spec.min_replicas, max_replicas)})
    return [(c, m, max_replicas) for c in counts for m in mins]


def recommend(
    spec: ScalerSpec,
    traffic: TrafficShape,
    settings: SimulationSettings,
    *,
    target_age_s: float,
    on_candidate: Callable[[int, int], None] | None = None,
) -> Recommendation:
    """Simulate every candidate; cheapest that meets target_age_s, else the lowest p99."""
    grid = candidate_grid(spec, traffic, settings.per_replica_rate, target_age_s)
    results: list[tuple[int, int, int, SimulationResult]] = []
    for index, (count, low, high) in enumerate(grid):
        candidate = spec.with_bounds(message_count=count, min_replicas=low, max_replicas=high)
        results.append((count, low, high, simulate(candidate, traffic, settings)))
        if on_candidate is not None:
            on_candidate(index + 1, len(grid))
    meeting = [r for r in results if r[3].summary.queue_age_p99_s <= target_age_s]
    if meeting:
        best = min(meeting, key=lambda r: (r[3].summary.replica_seconds, -r[0], r[1]))
    else:
        best = min(results, key=lambda r: (r[3].summary.queue_age_p99_s, r[3].summary.replica_seconds))
    count, low, high, result = best
    return Recommendation(count, low, high, bool(meeting), result, len(grid))
