"""The stack a standalone bench tool runs on: a local bus, a digits Triton and N workers.

One async context manager for the `python -m qscore_tools.bench.<tool>` entry points
(producer_cpu, reply_batch_drain, per_message_cpu, cold_start), which each measure one thing on
a fresh stack of their own; `qscore bench` itself runs on `BenchStack` (stack.py).

    async with standalone_stack(workers=1, prefix="qscore-x-") as stack:
        ... stack.connection, stack.triton_url, stack.workers[0].pid ...
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from qscore_local.workers import WorkerPool, WorkerProcess


@dataclass(frozen=True)
class StandaloneStack:
    connection: str  # the local bus's connection string
    triton_url: str  # Triton's gRPC URL
    work: Path  # a fresh temporary folder: the workers' logs, anything else the tool writes
    workers: list[WorkerProcess] = field(default_factory=list)  # started, ready


@contextlib.asynccontextmanager
async def standalone_stack(
    *, workers: int = 1, prefix: str = "qscore-bench-", models: tuple[str, ...] = ("digits",)
) -> AsyncIterator[StandaloneStack]:
    """Bus and Triton started, then `workers` workers (0: the tool starts its own), all on this
    machine; on exit the workers are stopped (they settle what is in flight), then Triton, the bus."""
    from qscore_local.bus.launcher import LocalBus
    from qscore_local.triton.launcher import LocalTriton
    from qscore_tools.bench.workload import ROOT

    bus = LocalBus()
    endpoint = await asyncio.to_thread(bus.start)
    triton = LocalTriton(repo=ROOT / "triton_repo", models=list(models))
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        endpoints = await asyncio.to_thread(triton.start, timeout=120)
        env = {
            "QSCORE_SERVICEBUS_CONNECTION": endpoint.connection_string,
            "QSCORE_TRITON_URL": endpoints.grpc_url,
        }
        pool = WorkerPool(count=0, env=env, log_dir=work, drain_grace_s=5)
        try:
            started = [await pool.add() for _ in range(workers)]
            yield StandaloneStack(endpoint.connection_string, endpoints.grpc_url, work, started)
        finally:
            await pool.stop()
    finally:
        await asyncio.to_thread(triton.stop)
        await asyncio.to_thread(bus.stop)
