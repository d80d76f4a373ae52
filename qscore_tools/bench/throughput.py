"""Issue 16's phases of a run: requests per message, producer-side coalescing, priority lanes.

- the rows-per-message sweep: closed loop, one N-row request per message, N = 1, 8, 32, 128,
  about the same rows in flight; and one point of 128 single-row requests (items) per
  request-batch message (`score_batch`);
- coalescing: single-row `score()` calls at high concurrency, the producer's coalescing on
  vs off (one message and one send per call);
- lanes: the high lane alone (open loop at a tenth of the low lane's throughput), the low
  lane alone (closed loop, saturated), then both at once.

All against the run's own stack (digits, the workers receive from both lanes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qscore_tools.bench.children import Window, run_children
from qscore_tools.bench.points import merge_samples
from qscore_tools.bench.profiling import Profiler
from qscore_tools.bench.queue_path import CLIENT_MODULE, QueueMeasurement, measure_queue, wait_for_empty_queue
from qscore_tools.bench.settings import BenchSettings
from qscore_tools.bench.stack import HIGH_LANE_QUEUE, BenchStack

REQUEST_QUEUE = "scoring-requests"


@dataclass
class LaneResults:
    high_alone: QueueMeasurement
    low_alone: QueueMeasurement
    high_mixed: QueueMeasurement
    low_mixed: QueueMeasurement

    @property
    def high_p99_ratio(self) -> float:
        alone = self.high_alone.point.latency.p99_ms
        return self.high_mixed.point.latency.p99_ms / alone if alone > 0 else 0.0

    @property
    def low_kept(self) -> float:
        alone = self.low_alone.point.samples_per_s
        return self.low_mixed.point.samples_per_s / alone if alone > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "high_alone": self.high_alone.as_dict(),
            "low_alone": self.low_alone.as_dict(),
            "high_mixed": self.high_mixed.as_dict(),
            "low_mixed": self.low_mixed.as_dict(),
            "high_p99_ratio": self.high_p99_ratio,
            "low_kept": self.low_kept,
        }


@dataclass
class ThroughputResults:
    model: str
    sweep: dict[int, QueueMeasurement] = field(default_factory=dict)  # rows per message -> point
    items: QueueMeasurement | None = None  # `items_per_message` single-row requests per message
    coalesce_on: QueueMeasurement | None = None
    coalesce_off: QueueMeasurement | None = None
    lanes: LaneResults | None = None

    @property
    def coalesce_gain(self) -> float | None:
        if self.coalesce_on is None or self.coalesce_off is None:
            return None
        off = self.coalesce_off.point.samples_per_s
        return self.coalesce_on.point.samples_per_s / off if off > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sweep": {str(rows): point.as_dict() for rows, point in self.sweep.items()},
            "items": None if self.items is None else self.items.as_dict(),
            "coalesce_on": None if self.coalesce_on is None else self.coalesce_on.as_dict(),
            "coalesce_off": None if self.coalesce_off is None else self.coalesce_off.as_dict(),
            "coalesce_gain": self.coalesce_gain,
            "lanes": None if self.lanes is None else self.lanes.as_dict(),
        }


async def measure_sweep(
    stack: BenchStack, results: ThroughputResults, settings: BenchSettings, profiler: Profiler | None = None
) -> None:
    points = [(rows, ["--rows", str(rows)], f"{rows} rows") for rows in settings.sweep_rows]
    items = settings.items_per_message
    points.append((items, ["--client", "batch", "--items", str(items)], f"{items} items"))
    for index, (per_message, client, what) in enumerate(points):
        concurrency = max(2, settings.sweep_rows_in_flight // per_message)
        measurement = await measure_queue(
            stack,
            results.model,
            concurrency=concurrency,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"{what}/message c={concurrency}",
            client_args=client,
            samples_per_request=per_message,
            profiler=profiler,
        )
        if index < len(settings.sweep_rows):
            results.sweep[per_message] = measurement
        else:
            results.items = measurement


async def measure_coalescing(stack: BenchStack, results: ThroughputResults, settings: BenchSettings) -> None:
    for client in ("coalesce", "single"):
        measurement = await measure_queue(
            stack,
            results.model,
            concurrency=settings.coalesce_concurrency,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"score() coalescing {'on' if client == 'coalesce' else 'off'}",
            client_args=["--client", client],
        )
        if client == "coalesce":
            results.coalesce_on = measurement
        else:
            results.coalesce_off = measurement


async def measure_lanes(stack: BenchStack, results: ThroughputResults, settings: BenchSettings) -> None:
    """Low lane alone (saturated), high lane alone at a tenth of that, then both together."""
    warmup_s, duration_s = settings.warmup_s, settings.duration_s
    low_alone = await measure_queue(
        stack,
        results.model,
        concurrency=settings.lane_low_concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
        label="low lane alone",
    )
    high_rate = max(1.0, low_alone.point.samples_per_s * settings.high_lane_share)
    high_args = ["--client", "single", "--priority", "9", "--high-queue", HIGH_LANE_QUEUE]
    high_alone = await measure_queue(
        stack,
        results.model,
        rate_per_s=high_rate,
        warmup_s=warmup_s,
        duration_s=duration_s,
        label=f"high lane alone {high_rate:,.0f}/s",
        request_queue=HIGH_LANE_QUEUE,
        client_args=high_args,
    )
    low_mixed, high_mixed = await _both_lanes(stack, results.model, settings, high_rate, high_args)
    results.lanes = LaneResults(high_alone, low_alone, high_mixed, low_mixed)


async def _both_lanes(
    stack: BenchStack, model: str, settings: BenchSettings, high_rate: float, high_args: list[str]
) -> tuple[QueueMeasurement, QueueMeasurement]:
    for queue in (REQUEST_QUEUE, HIGH_LANE_QUEUE):
        await wait_for_empty_queue(stack.bus_connection, queue)
    base = ["--connection", stack.bus_connection, "--model", model]
    low = [*base, "--request-queue", REQUEST_QUEUE, "--concurrency", str(settings.lane_low_concurrency)]
    high = [*base, "--request-queue", REQUEST_QUEUE, "--rate", f"{high_rate:.3f}", *high_args]
    window = Window.after_warmup(settings.warmup_s, settings.duration_s)
    samples, _ = await run_children(CLIENT_MODULE, [low, high], window=window)
    points = []
    for sample, mode, label in (
        (samples[0], "closed", "low lane mixed"),
        (samples[1], "open", "high lane mixed"),
    ):
        point = merge_samples(
            [sample],
            path="queue",
            model=model,
            mode=mode,
            concurrency=settings.lane_low_concurrency if mode == "closed" else 1,
            batch_size=1,
            offered_per_s=high_rate if mode == "open" else 0.0,
        )
        points.append(QueueMeasurement(point=point, costs={}, label=label))
    return points[0], points[1]


async def measure_throughput(
    stack: BenchStack, settings: BenchSettings, progress: Any, profiler: Profiler | None = None
) -> ThroughputResults:
    """Every phase above on `settings.throughput_model`."""
    results = ThroughputResults(settings.throughput_model)
    progress.phase(f"{results.model}: rows per message {', '.join(map(str, settings.sweep_rows))}")
    await measure_sweep(stack, results, settings, profiler)
    progress.phase(f"{results.model}: score() coalescing on vs off")
    await measure_coalescing(stack, results, settings)
    progress.phase(f"{results.model}: priority lanes")
    await measure_lanes(stack, results, settings)
    for point in [*results.sweep.values(), results.items, results.coalesce_on, results.coalesce_off]:
        if point is not None:
            progress.point(_describe(point))
    if results.lanes is not None:
        for point in (results.lanes.low_alone, results.lanes.high_alone, results.lanes.low_mixed):
            progress.point(_describe(point))
        progress.point(_describe(results.lanes.high_mixed))
    return results


def _describe(measurement: QueueMeasurement) -> str:
    point = measurement.point
    return f"{measurement.label}: {point.samples_per_s:,.0f} samples/s, p99 {point.latency.p99_ms:.1f} ms"
