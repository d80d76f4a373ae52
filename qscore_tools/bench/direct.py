"""Direct-Triton load: the ceiling the queue path is compared against.

perf_analyzer cannot be installed here, so this is the benchmark's own asyncio gRPC load
generator (qscore_tools.bench.direct_client), run in one or more processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from qscore_tools.bench.children import Window, run_children, split_evenly
from qscore_tools.bench.points import LoadPoint, merge_samples

CLIENT_MODULE = "qscore_tools.bench.direct_client"


@dataclass(frozen=True)
class CeilingSearch:
    """How the ceiling is searched: concurrency grows until throughput stops growing."""

    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    growth_threshold: float = 0.05  # a level must beat the best so far by this fraction to count
    patience: int = 2  # stop after this many levels in a row without growth
    client_busy_fraction: float = 0.8  # a client process this busy is the bottleneck: add one
    max_processes: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


@dataclass(frozen=True)
class Ceiling:
    model: str
    batch_size: int
    samples_per_s: float
    concurrency: int
    processes: int
    points: list[LoadPoint]


async def measure_direct(
    url: str,
    model: str,
    *,
    batch_size: int,
    concurrency: int = 1,
    processes: int = 1,
    rate_per_s: float = 0.0,
    warmup_s: float,
    duration_s: float,
    stream: bool = False,
) -> LoadPoint:
    """One direct-Triton point: closed loop at `concurrency`, or open loop at `rate_per_s` requests/s
    (`stream`: through the batch direct engine's streamed requests, not tritonclient's unary calls)."""
    common = ["--url", url, "--model", model, "--batch-size", str(batch_size)]
    common += ["--stream"] if stream else []

    if rate_per_s > 0:
        shares = [rate_per_s / processes] * processes
        per_child = [[*common, "--rate", f"{share:.3f}"] for share in shares]
    else:
        per_child = [[*common, "--concurrency", str(share)] for share in split_evenly(concurrency, processes)]
    window = Window.after_warmup(warmup_s, duration_s)
    samples, _ = await run_children(CLIENT_MODULE, per_child, window=window)
    return merge_samples(
        samples,
        path="direct",
        model=model,
        mode="open" if rate_per_s > 0 else "closed",
        concurrency=concurrency,
        batch_size=batch_size,
        offered_per_s=rate_per_s * batch_size,
    )


async def find_ceiling(
    url: str,
    model: str,
    *,
    batch_size: int,
    warmup_s: float,
    duration_s: float,
    search: CeilingSearch | None = None,
    on_point: Callable[[LoadPoint], None] | None = None,
) -> Ceiling:
    """Raise concurrency level by level until samples/s stops growing; the best level is the ceiling."""
    search = search or CeilingSearch()
    points: list[LoadPoint] = []
    best: LoadPoint | None = None
    processes, stale = 1, 0
    for concurrency in search.levels:
        processes = min(processes, concurrency)
        point = await measure_direct(
            url,
            model,
            batch_size=batch_size,
            concurrency=concurrency,
            processes=processes,
            warmup_s=warmup_s,
            duration_s=duration_s,
        )
        points.append(point)
        if on_point is not None:
            on_point(point)
        if best is None or point.samples_per_s > best.samples_per_s * (1 + search.growth_threshold):
            best, stale = point, 0
        else:
            stale += 1
            if stale >= search.patience:
                break
        if point.client_cpu_fraction >= search.client_busy_fraction:
            processes = min(processes * 2, search.max_processes)
    assert best is not None, "CeilingSearch.levels must not be empty"
    return Ceiling(
        model=model,
        batch_size=batch_size,
        samples_per_s=best.samples_per_s,
        concurrency=best.concurrency,
        processes=best.processes,
        points=points,
    )
