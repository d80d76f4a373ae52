"""GPU utilisation during a run: `nvidia-smi` sampled in the background, read back per window.

`nvidia-smi --query-gpu=... --loop-ms=N` prints one CSV line per GPU every N ms; a reader thread
stamps each line with the host clock when it arrives, so a load point's window (epoch seconds)
selects its samples. Without nvidia-smi (the CPU dry run) the monitor is `available = False`
and every summary is None: the report says so instead of inventing a figure.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import IO

from qscore_local.processes import stop_process

QUERY = "utilization.gpu,utilization.memory,memory.used,power.draw,clocks.sm"
FIELDS = ("gpu_util_pct", "mem_util_pct", "memory_used_mib", "power_w", "sm_clock_mhz")
INTERVAL_MS = 200


@dataclass(frozen=True)
class GpuSample:
    at: float  # epoch seconds, host clock at arrival
    gpu_util_pct: float
    mem_util_pct: float
    memory_used_mib: float
    power_w: float
    sm_clock_mhz: float


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # "[N/A]" / "[Not Supported]": some VMs report no power or clocks


def parse_line(line: str, at: float) -> GpuSample | None:
    """One CSV line (noheader, nounits); None unless it holds a GPU utilisation figure."""
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != len(FIELDS):
        return None
    values = [_number(part) for part in parts]
    if math.isnan(values[0]):
        return None
    return GpuSample(at, *values)


def _mean(values: list[float]) -> float | None:
    known = [v for v in values if not math.isnan(v)]
    return round(mean(known), 1) if known else None


def _max(values: list[float]) -> float | None:
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else None


def summarize(samples: list[GpuSample]) -> dict[str, float | None] | None:
    if not samples:
        return None
    return {
        "samples": float(len(samples)),
        "gpu_util_mean_pct": _mean([s.gpu_util_pct for s in samples]),
        "gpu_util_max_pct": _max([s.gpu_util_pct for s in samples]),
        "mem_util_mean_pct": _mean([s.mem_util_pct for s in samples]),
        "memory_used_max_mib": _max([s.memory_used_mib for s in samples]),
        "power_mean_w": _mean([s.power_w for s in samples]),
        "sm_clock_mean_mhz": _mean([s.sm_clock_mhz for s in samples]),
    }


class GpuMonitor:
    """`with GpuMonitor(log) as gpu: ...; gpu.window(start, end)` -> utilisation summary or None."""

    def __init__(self, log_path: Path | None = None, interval_ms: int = INTERVAL_MS) -> None:
        self.binary = shutil.which("nvidia-smi")
        self.interval_ms = interval_ms
        self.log_path = log_path
        self.samples: list[GpuSample] = []
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.binary is not None

    def __enter__(self) -> GpuMonitor:
        if self.binary is None:
            return self
        command = [
            self.binary,
            f"--query-gpu={QUERY}",
            "--format=csv,noheader,nounits",
            f"-lms={self.interval_ms}",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread = threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True)
        self._thread.start()
        return self

    def _read(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        log = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115 (closed below)
        try:
            for line in stream:
                now = time.time()
                if log is not None:
                    log.write(f"{now:.3f},{line}")
                sample = parse_line(line, now)
                if sample is not None:
                    with self._lock:
                        self.samples.append(sample)
        finally:
            if log is not None:
                log.close()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process, grace_s=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def window(self, start: float, end: float) -> dict[str, float | None] | None:
        with self._lock:
            return summarize([s for s in self.samples if start <= s.at <= end])
