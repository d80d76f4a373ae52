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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qscore_tools.bench.metering import ProcessMeter
from qscore_tools.bench.repo_variants import without_dynamic_batching
from qscore_tools.bench.workload import ROOT

WORKER_READY_TIMEOUT_S = 90.0
WORKER_STOP_TIMEOUT_S = 15.0
WORKER_COMMAND = [sys.executable, "-c", "from qscore_cli import main; main()", "worker"]


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


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    def log_tail(self, lines: int = 12) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])


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
        self.workers: list[WorkerProcess] = []
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

    def worker_env(self, health_port: int) -> dict[str, str]:
        return dict(os.environ) | {
            "QSCORE_SERVICEBUS_CONNECTION": self.bus_connection,
            "QSCORE_TRITON_URL": self.triton_url,
            "QSCORE_MAX_BATCH_SIZE": str(self.config.max_batch_size),
            "QSCORE_MAX_BATCH_DELAY_MS": str(self.config.max_batch_delay_ms),
            "QSCORE_HEALTH_PORT": str(health_port),
            "QSCORE_HEALTH_HOST": "127.0.0.1",
            "QSCORE_DRAIN_GRACE_S": "5",
            "QSCORE_REGISTRY_PATH": str(self._tmp / "registry.json"),
        }

    def _spawn_worker(self, index: int) -> WorkerProcess:
        port = _free_port()
        log_path = self._log_dir / f"worker-{index}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                WORKER_COMMAND,
                cwd=ROOT,
                env=self.worker_env(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return WorkerProcess(process, port, log_path)

    async def _start_workers(self) -> None:
        for index in range(self.config.workers):
            self.workers.append(await asyncio.to_thread(self._spawn_worker, index))
        await asyncio.gather(*(self._wait_ready(worker) for worker in self.workers))

    async def _wait_ready(self, worker: WorkerProcess) -> None:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        url = f"http://127.0.0.1:{worker.health_port}/readyz"
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise StackStartError(f"worker exited with {worker.process.returncode}: {worker.log_tail()}")
            if await asyncio.to_thread(_ready, url):
                return
            await asyncio.sleep(0.2)
        raise StackStartError(f"worker not ready after {WORKER_READY_TIMEOUT_S:.0f}s: {worker.log_tail()}")

    def _start_meters(self) -> None:
        self.meters["worker"] = ProcessMeter("worker", [w.process.pid for w in self.workers])
        if self.bus_pid is not None:
            self.meters["bus"] = ProcessMeter("bus", [self.bus_pid])
        if self._triton is not None and self._triton.pid is not None:
            self.meters["triton"] = ProcessMeter("triton", [self._triton.pid])
        for meter in self.meters.values():
            meter.start()

    def profile_targets(self) -> dict[str, int]:
        """Processes worth profiling: the first worker and the bus."""
        targets = {"worker": self.workers[0].process.pid} if self.workers else {}
        if self.bus_pid is not None:
            targets["bus"] = self.bus_pid
        return targets

    def cpu_probes(self) -> dict[str, Any]:
        return {role: meter.cpu_s for role, meter in self.meters.items()}

    async def _stop_worker(self, worker: WorkerProcess) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.process.wait), WORKER_STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
            await asyncio.to_thread(worker.process.wait)

    async def close(self) -> None:
        """Stop meters, workers (SIGTERM, then SIGKILL) and Triton; safe to call twice."""
        for meter in self.meters.values():
            await meter.stop()
        await asyncio.gather(*(self._stop_worker(worker) for worker in self.workers))
        self.workers = []
        if self._triton is not None:
            await asyncio.to_thread(self._triton.stop)
            self._triton = None
        shutil.rmtree(self._tmp, ignore_errors=True)
