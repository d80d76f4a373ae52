"""Issue 16's goals: items per message vs the ceiling, coalescing gain, priority lanes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qscore_tools.bench.queue_path import QueueMeasurement

if TYPE_CHECKING:
    from qscore_tools.bench.goals import Goal
    from qscore_tools.bench.runner import BenchRun

ITEMS_RATIO_TARGET = 0.25
COALESCE_GAIN_TARGET = 5.0
HIGH_LANE_P99_RATIO_TARGET = 3.0
LOW_LANE_KEPT_TARGET = 0.8


def _completed(*measurements: QueueMeasurement | None) -> bool:
    return all(m is not None and m.point.completed > 0 for m in measurements)


def throughput_goals(run: BenchRun, cores: int) -> list[Goal]:
    from qscore_tools.bench.goals import Goal, bottleneck, unmeasured

    results = run.throughput
    if results is None:
        return []
    goals: list[Goal] = []
    ceiling = run.models.get(results.model)
    ceiling_s = ceiling.ceiling.samples_per_s if ceiling and ceiling.ceiling else 0.0
    rows = max(results.sweep, default=0)
    items = run.settings.items_per_message
    for what, point in ((f"{rows} rows", results.sweep.get(rows)), (f"{items} items", results.items)):
        name = f"{results.model} samples/s at {what} per message / direct ceiling"
        if point is None or not _completed(point) or ceiling_s <= 0:
            goals.append(unmeasured(name, f">= {ITEMS_RATIO_TARGET}", "no such point or no ceiling"))
            continue
        ratio = point.point.samples_per_s / ceiling_s
        met = ratio >= ITEMS_RATIO_TARGET
        goals.append(
            Goal(name, f">= {ITEMS_RATIO_TARGET}", ratio, met, "" if met else bottleneck(point, cores))
        )
    name = "coalescing gain, single-row score() (on / off)"
    gain = results.coalesce_gain
    if gain is None or not _completed(results.coalesce_on, results.coalesce_off):
        goals.append(unmeasured(name, f">= {COALESCE_GAIN_TARGET:g}", "a side completed no requests"))
    else:
        met = gain >= COALESCE_GAIN_TARGET
        detail = "" if met or results.coalesce_on is None else bottleneck(results.coalesce_on, cores)
        goals.append(Goal(name, f">= {COALESCE_GAIN_TARGET:g}", gain, met, detail))
    goals += _lane_goals(run)
    return goals


def _lane_goals(run: BenchRun) -> list[Goal]:
    from qscore_tools.bench.goals import Goal, unmeasured

    lanes = run.throughput.lanes if run.throughput else None
    p99_name = "high-lane p99, low lane saturated / high lane alone"
    kept_name = "low-lane throughput kept beside the high lane"
    if lanes is None or not _completed(lanes.high_alone, lanes.high_mixed, lanes.low_alone, lanes.low_mixed):
        why = "a lane point completed no requests"
        return [
            unmeasured(p99_name, f"<= {HIGH_LANE_P99_RATIO_TARGET:g}", why),
            unmeasured(kept_name, f">= {LOW_LANE_KEPT_TARGET}", why),
        ]
    ratio, kept = lanes.high_p99_ratio, lanes.low_kept
    alone, mixed = lanes.high_alone.point.latency.p99_ms, lanes.high_mixed.point.latency.p99_ms
    detail = f"high p99 {alone:.1f} ms alone, {mixed:.1f} ms beside the saturated low lane"
    return [
        Goal(
            p99_name, f"<= {HIGH_LANE_P99_RATIO_TARGET:g}", ratio, ratio <= HIGH_LANE_P99_RATIO_TARGET, detail
        ),
        Goal(kept_name, f">= {LOW_LANE_KEPT_TARGET}", kept, kept >= LOW_LANE_KEPT_TARGET),
    ]
