"""Queue-path load points: producer -> bus -> workers -> Triton -> reply, with per-role cost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from qscore.bench.children import Window, run_children, split_evenly
from qscore.bench.metering import ProcessCost
from qscore.bench.points import LoadPoint, merge_samples
from qscore.bench.profiling import Profiler
from qscore.bench.stack import BenchStack

CLIENT_MODULE = "qscore.bench.queue_client"
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class QueueMeasurement:
    """A queue-path load point and what each role (worker, bus, triton) spent on it."""

    point: LoadPoint
    costs: dict[str, ProcessCost]
    label: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.point.as_dict() | {
            "label": self.label,
            "costs": {role: cost.as_dict() for role, cost in self.costs.items()},
        }


async def wait_for_empty_queue(connection: str, queue: str, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Let requests left over from the previous point finish, so they do not load the next one."""
    try:
        from qscore.bus.stats import queue_counts
    except ImportError:
        await asyncio.sleep(1.0)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            counts = await queue_counts(connection)
            row = counts.get(queue)
            if row is None or row.active + row.locked == 0:
                return
        await asyncio.sleep(0.25)


async def measure_queue(
    stack: BenchStack,
    model: str,
    *,
    concurrency: int = 1,
    rate_per_s: float = 0.0,
    processes: int = 1,
    warmup_s: float,
    duration_s: float,
    label: str = "",
    request_queue: str = "scoring-requests",
    profiler: Profiler | None = None,
) -> QueueMeasurement:
    """One queue-path point: closed loop at `concurrency`, or open loop at `rate_per_s` requests/s."""
    await wait_for_empty_queue(stack.bus_connection, request_queue)
    common = ["--connection", stack.bus_connection, "--model", model, "--request-queue", request_queue]
    if rate_per_s > 0:
        per_child = [[*common, "--rate", f"{rate_per_s / processes:.3f}"] for _ in range(processes)]
    else:
        shares = split_evenly(concurrency, processes)
        per_child = [[*common, "--concurrency", str(share)] for share in shares]
    window = Window.after_warmup(warmup_s, duration_s)
    profiling = None
    if profiler is not None:
        profiling = asyncio.create_task(profiler.record(stack.profile_targets(), f"{model} {label}", window))
    samples, cpu = await run_children(CLIENT_MODULE, per_child, window=window, cpu_probes=stack.cpu_probes())
    if profiling is not None:
        await profiling
    point = merge_samples(
        samples,
        path="queue",
        model=model,
        mode="open" if rate_per_s > 0 else "closed",
        concurrency=concurrency,
        batch_size=1,
        offered_per_s=rate_per_s,
    )
    costs = {
        role: meter.cost(cpu_s=cpu.get(role, 0.0), window_s=duration_s, messages=point.completed)
        for role, meter in stack.meters.items()
    }
    return QueueMeasurement(point=point, costs=costs, label=label)
