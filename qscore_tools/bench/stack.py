"""The system under test: local Triton, local bus and N `qscore worker` subprocesses.

Workers get their settings the way production does, from `QSCORE_*` variables. The stack
exposes a CPU probe and peak-RSS meter per role (worker, bus, triton) for per-message cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qscore_local.workers import WorkerPool, WorkerStartError
from qscore_tools.bench.metering import ProcessMeter
from qscore_tools.bench.repo_variants import without_dynamic_batching
from qscore_tools.bench.workload import ROOT

WORKER_READY_TIMEOUT_S = 90.0
WORKER_DRAIN_GRACE_S = 5.0


HIGH_LANE_QUEUE = "scoring-requests-high"


class StackStartError(Exception):
    """A part of the benchmark stack did not start; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """One configuration of the system under test."""

    models: tuple[str, ...]
    workers: int = 1
    max_batch_size: int = 64  # worker rows per Triton call; 1 = batching off
    max_batch_delay_ms: float = 2.0
    dynamic_batching: bool = True  # Triton's own dynamic batcher
    repo: Path = ROOT / "triton_repo"
    log_dir: Path | None = None


def _free_port() -> int:
    from qscore_local.triton.launcher import pick_free_port

    return pick_free_port()


class BenchStack:
    """`async with BenchStack(config, bus_connection=...) as stack:` starts Triton and the workers.

    The bus is started once per benchmark run by the caller (qscore_tools.bench.runner) and shared
    by every configuration, so only Triton and the workers restart between configurations.
    """

    def __init__(self, config: StackConfig, *, bus_connection: str, bus_pid: int | None) -> None:
        self.config = config
        self.bus_connection = bus_connection
        self.bus_pid = bus_pid
        self._tmp = Path(tempfile.mkdtemp(prefix="qscore-bench-stack-"))
        self._log_dir = config.log_dir or self._tmp
        self._triton: Any = None
        self.triton_url = ""
        self.pool: WorkerPool | None = None
        self.meters: dict[str, ProcessMeter] = {}

    async def __aenter__(self) -> BenchStack:
        try:
            await asyncio.to_thread(self._start_triton)
            await self._start_workers()
        except BaseException:
            await self.close()
            raise
        self._start_meters()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _start_triton(self) -> None:
        from qscore_local.triton.launcher import LocalTriton

        repo = self.config.repo
        if not self.config.dynamic_batching:
            repo = without_dynamic_batching(repo, self._tmp / "repo", self.config.models)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._triton = LocalTriton(
            repo=repo, models=list(self.config.models), log_path=self._log_dir / "tritonserver.log"
        )
        self.triton_url = self._triton.start(timeout=120).grpc_url

    def worker_env(self) -> dict[str, str]:
        return {
            "QSCORE_SERVICEBUS_CONNECTION": self.bus_connection,
            "QSCORE_TRITON_URL": self.triton_url,
            "QSCORE_MAX_BATCH_SIZE": str(self.config.max_batch_size),
            "QSCORE_MAX_BATCH_DELAY_MS": str(self.config.max_batch_delay_ms),
            "QSCORE_REGISTRY_PATH": str(self._tmp / "registry.json"),
            # Both lanes, as deployed (issue 16): the lanes phase loads the high one.
            "QSCORE_PRIORITY_QUEUES": HIGH_LANE_QUEUE,
        }

    async def _start_workers(self, count: int | None = None) -> None:
        self.pool = WorkerPool(
            count=count or self.config.workers,
            env=self.worker_env(),
            log_dir=self._log_dir,
            drain_grace_s=WORKER_DRAIN_GRACE_S,
            cwd=ROOT,
        )
        try:
            await self.pool.start(timeout_s=WORKER_READY_TIMEOUT_S)
        except WorkerStartError as exc:
            raise StackStartError(str(exc)) from exc

    def _start_meters(self) -> None:
        self.meters["worker"] = ProcessMeter("worker", self.pool.pids() if self.pool else [])
        if self.bus_pid is not None:
            self.meters["bus"] = ProcessMeter("bus", [self.bus_pid])
        if self._triton is not None and self._triton.pid is not None:
            self.meters["triton"] = ProcessMeter("triton", [self._triton.pid])
        for meter in self.meters.values():
            meter.start()

    def profile_targets(self) -> dict[str, int]:
        """Processes worth profiling: the first worker and the bus."""
        pids = self.pool.pids() if self.pool else []
        targets = {"worker": pids[0]} if pids else {}
        if self.bus_pid is not None:
            targets["bus"] = self.bus_pid
        return targets

    def cpu_probes(self) -> dict[str, Any]:
        return {role: meter.cpu_s for role, meter in self.meters.items()}

    async def stop_workers(self) -> None:
        if self.pool is not None:
            await self.pool.stop()

    async def restart_workers(self, count: int | None = None) -> None:
        """Fresh workers (`count`, default the config's) on the current bus, metered anew."""
        await self.stop_workers()
        await self._stop_meters()
        await self._start_workers(count)
        self._start_meters()

    def pause_workers(self, paused: bool = True) -> None:
        """SIGSTOP (or SIGCONT) every worker: a drain fills the queue while they cannot take any,
        without paying a worker start per drain."""
        for pid in self.pool.pids() if self.pool else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)

    async def use_bus(self, connection: str, pid: int | None) -> None:
        """Point the stack at another endpoint (same Triton); workers stay stopped until
        `restart_workers()` (the network-latency phase moves between endpoints this way)."""
        await self.stop_workers()
        await self._stop_meters()
        self.bus_connection, self.bus_pid = connection, pid

    async def _stop_meters(self) -> None:
        for meter in self.meters.values():
            await meter.stop()
        self.meters = {}

    async def close(self) -> None:
        """Stop meters, workers (SIGTERM, then SIGKILL) and Triton; safe to call twice."""
        for meter in self.meters.values():
            await meter.stop()
        if self.pool is not None:
            await self.pool.stop()
            self.pool = None
        if self._triton is not None:
            await asyncio.to_thread(self._triton.stop)
            self._triton = None
        shutil.rmtree(self._tmp, ignore_errors=True)
