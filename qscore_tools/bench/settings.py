"""What one `qscore bench` run measures: one typed, keyword-only settings object."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qscore_tools.bench.workload import ROOT

DEFAULT_MODELS = ("digits", "bench_mlp")
DEFAULT_RESULTS_DIR = ROOT / "bench" / "results"


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """Every knob of a run. `quick()` gives the short form CI runs."""

    models: tuple[str, ...] = DEFAULT_MODELS
    workers: int = 1
    warmup_s: float = 2.0
    duration_s: float = 10.0
    max_batch_size: int = 64  # worker rows per Triton call, and the direct generator's batch size
    max_batch_delay_ms: float = 2.0
    direct_levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    # Closed-loop in-flight requests, raised until samples/s stops growing.
    queue_levels: tuple[int, ...] = (32, 128, 512, 1024, 2048)
    offered_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # open loop, of the closed-loop peak
    producer_processes: int = 1
    batching_model: str = "digits"  # the model of the batching on/off comparison
    output_dir: Path = DEFAULT_RESULTS_DIR
    quick: bool = False
    keep_logs: bool = False
    profile: bool = False  # py-spy the worker and bus at every closed-loop level
    # Issue 16 (qscore_tools.bench.throughput), on this model:
    throughput_model: str = "digits"
    sweep_rows: tuple[int, ...] = (1, 8, 32, 128)  # rows per message (one request each)
    items_per_message: int = 128  # and one point of this many single-row requests per message
    sweep_rows_in_flight: int = 1024  # closed loop: concurrency = this / rows (or items)
    coalesce_concurrency: int = 512  # concurrent single-row score() calls
    lane_low_concurrency: int = 512  # the saturated low lane's closed loop
    high_lane_share: float = 0.1  # the high lane's rate, of the low lane's throughput alone
    # Issue 23 (qscore_tools.bench.network): the queue path with the bus this far away, one way.
    # 5 ms stands for a Service Bus namespace in the same Azure region (docs/benchmarks.md);
    # 0 turns the phase off.
    bus_latency_ms: float = 5.0
    drain_latencies_ms: tuple[float, ...] = (5.0, 25.0)  # single-row drains, besides 0 and D
    drain_messages: int = 3000
    drain_rows: int = 128  # rows per request of the many-row drain
    drain_rows_latencies_ms: tuple[float, ...] = (5.0,)  # besides 0
    drain_rows_messages: int = 400

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("at least one model is needed")
        if self.workers < 1 or self.producer_processes < 1:
            raise ValueError("workers and producer processes must be >= 1")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("duration must be > 0 and warm-up >= 0")
        if self.max_batch_size < 1 or self.max_batch_delay_ms < 0:
            raise ValueError("max batch size must be >= 1 and max batch delay >= 0")
        if not self.direct_levels or not self.queue_levels or not self.offered_fractions:
            raise ValueError("concurrency levels and offered fractions must not be empty")
        latencies = (self.bus_latency_ms, *self.drain_latencies_ms, *self.drain_rows_latencies_ms)
        if any(latency < 0 for latency in latencies):
            raise ValueError("bus latency must be >= 0 ms")
        if min(self.drain_messages, self.drain_rows_messages) < 2 or self.drain_rows < 1:
            raise ValueError("a drain needs at least 2 messages of at least 1 row")

    @classmethod
    def quick_settings(cls, **overrides: Any) -> BenchSettings:
        """The short form: a few seconds per point, fewer levels; figures are rough but real."""
        quick = cls(
            warmup_s=0.5,
            duration_s=2.0,
            direct_levels=(1, 4, 16),
            queue_levels=(16, 64),
            offered_fractions=(0.25, 0.5, 1.0),
            sweep_rows=(1, 128),
            sweep_rows_in_flight=256,
            coalesce_concurrency=128,
            lane_low_concurrency=128,
            drain_messages=300,
            drain_rows_messages=40,
            quick=True,
        )
        return replace(quick, **overrides)

    def with_overrides(self, **overrides: Any) -> BenchSettings:
        """A copy with the given fields replaced; None means "keep"."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data

    def throughput_involved(self) -> bool:
        return self.throughput_model in self.models

    def batching_involved(self) -> bool:
        return self.batching_model in self.models


def results_stamp(started_at: float) -> str:
    """The file-name stem of a run's results: its UTC start time."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
