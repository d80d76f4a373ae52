"""Closed-loop and open-loop load shapes, shared by the direct-Triton and queue-path clients.

Both start loading at once (warm-up) and count only operations that *finish* inside the
measurement window, which starts at an absolute wall-clock time (`start_at`, epoch seconds) so
several load-generator processes and the harness's CPU meters share one window. The open
loop schedules sends on a fixed clock whether or not earlier ones have finished, and measures
latency from the scheduled time (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

ERROR_PAUSE_S = 0.01
# One operation: does one request and returns optional per-request detail (stage timings).
Operation = Callable[[], Awaitable[dict[str, float] | None]]


@dataclass
class LoadSample:
    """What one load run measured inside its window."""

    window_s: float
    completed: int = 0
    errors: int = 0
    dropped: int = 0  # open loop: sends skipped because too many were outstanding
    latencies_ms: list[float] = field(default_factory=list)
    details: list[dict[str, float]] = field(default_factory=list)
    client_cpu_s: float = 0.0
    first_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "completed": self.completed,
            "errors": self.errors,
            "dropped": self.dropped,
            "latencies_ms": self.latencies_ms,
            "details": self.details,
            "client_cpu_s": self.client_cpu_s,
            "first_error": self.first_error,
        }


def window_bounds(start_at: float, duration_s: float) -> tuple[float, float]:
    """The window [start_at, start_at + duration_s) on the perf_counter clock."""
    start = time.perf_counter() + (start_at - time.time())
    return start, start + duration_s


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Window:
    """The measurement window and the sample it fills."""

    start: float
    end: float
    sample: LoadSample
    cpu_at_start: float | None = None

    def record(self, scheduled: float, detail: dict[str, float] | None) -> None:
        finished = time.perf_counter()
        if self.start <= finished <= self.end:
            self.sample.completed += 1
            self.sample.latencies_ms.append((finished - scheduled) * 1000)
            if detail:
                self.sample.details.append(detail)

    def record_error(self, exc: BaseException) -> None:
        if self.start <= time.perf_counter() <= self.end:
            self.sample.errors += 1
            self.sample.first_error = self.sample.first_error or f"{type(exc).__name__}: {exc}"[:300]

    async def mark_cpu(self) -> None:
        """Read the process CPU time at the window's start and end (client-side bottleneck check)."""
        await asyncio.sleep(max(0.0, self.start - time.perf_counter()))
        self.cpu_at_start = process_cpu_s()
        await asyncio.sleep(max(0.0, self.end - time.perf_counter()))
        self.sample.client_cpu_s = process_cpu_s() - self.cpu_at_start


async def _attempt(window: _Window, operation: Operation, scheduled: float) -> bool:
    """One operation, recorded in the window; False if it failed."""
    try:
        detail = await operation()
    except Exception as exc:  # a failed request is a figure, not a crash of the benchmark
        window.record_error(exc)
        return False
    else:
        window.record(scheduled, detail)
        return True


async def closed_loop(
    operation: Operation, *, concurrency: int, start_at: float, duration_s: float
) -> LoadSample:
    """`concurrency` callers, each sending its next request as soon as the previous one returns."""
    start, end = window_bounds(start_at, duration_s)
    window = _Window(start=start, end=end, sample=LoadSample(duration_s))

    async def caller() -> None:
        while time.perf_counter() < window.end:
            if not await _attempt(window, operation, time.perf_counter()):
                await asyncio.sleep(ERROR_PAUSE_S)  # a failing target must not turn this into a busy loop

    await asyncio.gather(window.mark_cpu(), *(caller() for _ in range(concurrency)))
    return window.sample


async def open_loop(
    operation: Operation,
    *,
    rate_per_s: float,
    start_at: float,
    duration_s: float,
    max_outstanding: int = 20_000,
) -> LoadSample:
    """Send at `rate_per_s` on a fixed schedule; latency counts from the scheduled send time."""
    now = time.perf_counter()
    start, end = window_bounds(start_at, duration_s)
    window = _Window(start=start, end=end, sample=LoadSample(duration_s))
    cpu_task = asyncio.create_task(window.mark_cpu())
    outstanding: set[asyncio.Task[bool]] = set()
    interval, sent = 1.0 / rate_per_s, 0
    while True:
        scheduled = now + sent * interval
        if scheduled >= window.end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent += 1
        if len(outstanding) >= max_outstanding:
            window.sample.dropped += 1 if scheduled >= window.start else 0
            continue
        task = asyncio.create_task(_attempt(window, operation, scheduled))
        outstanding.add(task)
        task.add_done_callback(outstanding.discard)
    await cpu_task
    # Replies still outstanding at the end are past the window: drop them rather than wait.
    for task in list(outstanding):
        task.cancel()
    await asyncio.gather(*outstanding, return_exceptions=True)
    return window.sample
