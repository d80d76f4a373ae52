"""Latency summaries and CDFs from raw per-request latencies (milliseconds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Points kept per CDF in the results JSON: enough for a smooth plot, small enough to read.
CDF_POINTS = 200


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one set of latencies, all in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


EMPTY = LatencySummary(count=0, mean_ms=0.0, p50_ms=0.0, p95_ms=0.0, p99_ms=0.0, max_ms=0.0)


def summarize(latencies_ms: Sequence[float]) -> LatencySummary:
    """Percentiles of `latencies_ms`; an empty input gives an all-zero summary."""
    if len(latencies_ms) == 0:
        return EMPTY
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencySummary(
        count=int(values.size),
        mean_ms=float(values.mean()),
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(values.max()),
    )


def cdf(latencies_ms: Sequence[float], points: int = CDF_POINTS) -> list[tuple[float, float]]:
    """(latency_ms, fraction at or below) pairs at evenly spaced quantiles, for plots."""
    if len(latencies_ms) == 0:
        return []
    values = np.asarray(latencies_ms, dtype=np.float64)
    fractions = np.linspace(0.0, 1.0, num=min(points, values.size) + 1)[1:]
    quantiles = np.quantile(values, fractions)
    return [(float(q), float(f)) for q, f in zip(quantiles, fractions, strict=True)]


def mean_of(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def subsample(values: list[float], limit: int, seed: int = 0) -> list[float]:
    """At most `limit` values picked uniformly (fixed seed): keeps child-process results small."""
    if len(values) <= limit:
        return values
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(values), size=limit, replace=False)
    return [values[i] for i in sorted(picked)]
