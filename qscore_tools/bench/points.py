"""A measured load point, and how child-process samples merge into one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from qscore_tools.bench.latency import EMPTY, LatencySummary, cdf, mean_of, summarize

STAGES = ("queue_wait_ms", "batch_wait_ms", "inference_ms", "reply_ms")


@dataclass(frozen=True)
class LoadPoint:
    """One load setting and what it achieved. Samples are rows scored (one per queue message)."""

    path: str  # "direct" or "queue"
    model: str
    mode: str  # "closed" or "open"
    concurrency: int
    processes: int
    batch_size: int
    offered_per_s: float  # open loop: samples/s offered; closed loop: 0
    samples_per_s: float
    requests_per_s: float
    completed: int
    errors: int
    dropped: int
    latency: LatencySummary
    client_cpu_fraction: float  # busiest load-generator process, fraction of one core
    stages_ms: dict[str, float] = field(default_factory=dict)  # mean per stage (queue path)
    latency_cdf: list[tuple[float, float]] = field(default_factory=list)
    first_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadPoint:
        values = dict(data)
        values["latency"] = LatencySummary(**values["latency"])
        values["latency_cdf"] = [tuple(pair) for pair in values.get("latency_cdf", [])]
        return cls(**values)


def stage_means(details: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each stage over the requests that reported it."""
    if not details:
        return {}
    return {stage: mean_of([d[stage] for d in details if stage in d]) for stage in STAGES}


def merge_samples(
    samples: Sequence[dict[str, Any]],
    *,
    path: str,
    model: str,
    mode: str,
    concurrency: int,
    batch_size: int,
    offered_per_s: float = 0.0,
) -> LoadPoint:
    """Add up what several child processes measured over the same window."""
    latencies = [value for sample in samples for value in sample["latencies_ms"]]
    details = [detail for sample in samples for detail in sample.get("details", [])]
    completed = sum(int(sample["completed"]) for sample in samples)
    window = max((float(sample["window_s"]) for sample in samples), default=1.0)
    requests_per_s = completed / window if window > 0 else 0.0
    cpu_fraction = max((float(s["client_cpu_s"]) / float(s["window_s"]) for s in samples), default=0.0)
    summary = summarize(latencies) if latencies else EMPTY
    return LoadPoint(
        path=path,
        model=model,
        mode=mode,
        concurrency=concurrency,
        processes=len(samples),
        batch_size=batch_size,
        offered_per_s=offered_per_s,
        samples_per_s=requests_per_s * batch_size,
        requests_per_s=requests_per_s,
        completed=completed,
        errors=sum(int(sample["errors"]) for sample in samples),
        dropped=sum(int(sample.get("dropped", 0)) for sample in samples),
        latency=summary,
        client_cpu_fraction=cpu_fraction,
        stages_ms=stage_means(details),
        latency_cdf=cdf(latencies),
        first_error=next((str(s["first_error"]) for s in samples if s.get("first_error")), ""),
    )
