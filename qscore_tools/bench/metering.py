"""Per-process cost while load runs: CPU-seconds (psutil) and peak resident memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.25
MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcessCost:
    """What a group of processes (e.g. all workers) used during one load point."""

    role: str  # "worker", "bus", "triton"
    processes: int
    cpu_s: float  # user + system CPU-seconds over the window, summed over processes
    window_s: float
    messages: int
    peak_rss_mb: float  # the largest single process's peak RSS
    cpu_s_per_1000: float  # CPU-seconds per 1,000 messages
    messages_per_cpu_s: float  # messages per CPU-second: "per core" throughput

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def peak_rss_bytes(process: psutil.Process) -> int:
    """The kernel's high-water mark (VmHWM) where readable, else the current RSS."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(psutil.Error):
        return int(process.memory_info().rss)
    return 0


def _cpu_s(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


class ProcessMeter:
    """CPU time and peak RSS of a fixed set of processes (and their children), sampled in the background."""

    def __init__(self, role: str, pids: Sequence[int]) -> None:
        self.role = role
        self._processes = [psutil.Process(pid) for pid in pids]
        self._peak_rss: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def _family(self) -> list[psutil.Process]:
        family = list(self._processes)
        for process in self._processes:
            with contextlib.suppress(psutil.Error):
                family += process.children(recursive=True)
        return family

    def cpu_s(self) -> float:
        return sum(_cpu_s(process) for process in self._family())

    def _sample_rss(self) -> None:
        for process in self._processes:
            self._peak_rss[process.pid] = max(self._peak_rss.get(process.pid, 0), peak_rss_bytes(process))

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.to_thread(self._sample_rss)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def cost(self, *, cpu_s: float, window_s: float, messages: int) -> ProcessCost:
        """The cost over a window whose CPU-seconds the caller measured (cpu_s() at end minus start)."""
        self._sample_rss()
        per_1000 = cpu_s / messages * 1000 if messages else 0.0
        return ProcessCost(
            role=self.role,
            processes=len(self._processes),
            cpu_s=cpu_s,
            window_s=window_s,
            messages=messages,
            peak_rss_mb=max(self._peak_rss.values(), default=0) / MIB,
            cpu_s_per_1000=per_1000,
            messages_per_cpu_s=messages / cpu_s if cpu_s > 0 else 0.0,
        )
