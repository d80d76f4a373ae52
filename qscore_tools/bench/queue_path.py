"""Queue-path load points: producer -> bus -> workers -> Triton -> reply, with per-role cost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qscore_tools.bench.children import Window, run_children, split_evenly
from qscore_tools.bench.metering import ProcessCost
from qscore_tools.bench.points import LoadPoint, merge_samples
from qscore_tools.bench.profiling import Profiler
from qscore_tools.bench.stack import BenchStack

CLIENT_MODULE = "qscore_tools.bench.queue_client"
DRAIN_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueMeasurement:
    """A queue-path load point and what each role (worker, bus, triton) spent on it."""

    point: LoadPoint
    costs: dict[str, ProcessCost]
    label: str = ""
    # Requests still queued (active + locked) from earlier points when this one started, after
    # waiting up to DRAIN_TIMEOUT_S for them; None if the bus could not be asked.
    backlog_at_start: int | None = 0

    def as_dict(self) -> dict[str, Any]:
        return self.point.as_dict() | {
            "label": self.label,
            "backlog_at_start": self.backlog_at_start,
            "costs": {role: cost.as_dict() for role, cost in self.costs.items()},
        }


async def queued_requests(connection: str, queue: str) -> int | None:
    """Requests in `queue` not yet settled (active + locked); None if the bus cannot be asked."""
    from qscore_local.bus.stats import queue_counts

    try:
        counts = await queue_counts(connection, timeout_s=5)
    except Exception as exc:  # the figure is advisory: a point still runs without it
        log.warning("cannot read queue counts: %r", exc)
        return None
    row = counts.get(queue)
    return 0 if row is None else row.active + row.locked


async def wait_for_empty_queue(connection: str, queue: str, timeout_s: float = DRAIN_TIMEOUT_S) -> int | None:
    """Let requests left over from the previous point finish, so they do not load the next one.

    Returns what is still queued when the queue emptied (0) or the wait ran out (> 0: the next
    point would measure that backlog, not its own load), or None if the bus cannot be asked."""
    deadline = time.monotonic() + timeout_s
    while True:
        backlog = await queued_requests(connection, queue)
        if not backlog or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    if backlog:
        log.info("%d requests still queued in %s after %.0fs", backlog, queue, timeout_s)
    return backlog


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
    client_args: Sequence[str] = (),
    samples_per_request: int = 1,
    client_env: dict[str, str] | None = None,
) -> QueueMeasurement:
    """One queue-path point: closed loop at `concurrency`, or open loop at `rate_per_s` requests/s.
    `client_args` go to every load generator (queue_client: --client, --items, --priority);
    `client_env` is added to their environment (a checkout's PYTHONPATH, say)."""
    backlog = await wait_for_empty_queue(stack.bus_connection, request_queue)
    common = [
        "--connection",
        stack.bus_connection,
        "--model",
        model,
        "--request-queue",
        request_queue,
        *client_args,
    ]
    if rate_per_s > 0:
        per_child = [[*common, "--rate", f"{rate_per_s / processes:.3f}"] for _ in range(processes)]
    else:
        shares = split_evenly(concurrency, processes)
        per_child = [[*common, "--concurrency", str(share)] for share in shares]
    window = Window.after_warmup(warmup_s, duration_s)
    profiling = None
    if profiler is not None:
        profiling = asyncio.create_task(profiler.record(stack.profile_targets(), f"{model} {label}", window))
    samples, cpu = await run_children(
        CLIENT_MODULE, per_child, window=window, env=client_env, cpu_probes=stack.cpu_probes()
    )
    if profiling is not None:
        await profiling
    point = merge_samples(
        samples,
        path="queue",
        model=model,
        mode="open" if rate_per_s > 0 else "closed",
        concurrency=concurrency,
        batch_size=samples_per_request,
        offered_per_s=rate_per_s,
    )
    costs = {
        role: meter.cost(cpu_s=cpu.get(role, 0.0), window_s=duration_s, messages=point.completed)
        for role, meter in stack.meters.items()
    }
    return QueueMeasurement(point=point, costs=costs, label=label, backlog_at_start=backlog)
