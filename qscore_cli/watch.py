"""`qscore watch`: live queue counts from the bus and how fast each queue grows or drains."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

COLUMNS = ("queue", "active", "locked", "dead-lettered", "scheduled", "total", "Δ total/s", "Δ DLQ/s")


class CountsRow(Protocol):
    """What `qscore_local.bus.stats.QueueCounts` carries."""

    @property
    def active(self) -> int: ...
    @property
    def locked(self) -> int: ...
    @property
    def dead_letter(self) -> int: ...
    @property
    def scheduled(self) -> int: ...
    @property
    def total(self) -> int: ...


async def read_queue_counts(connection_string: str) -> Mapping[str, CountsRow]:
    """`qscore_local.bus.stats.queue_counts`, awaited if async or run in a thread if it blocks."""
    from qscore_local.bus.stats import queue_counts

    if inspect.iscoroutinefunction(queue_counts):
        result: Any = await queue_counts(connection_string)
    else:
        result = await asyncio.to_thread(queue_counts, connection_string)
    return dict(result)


@dataclass
class RateTracker:
    """Per-queue change per second of `total` and of `dead_letter` between two samples."""

    previous: dict[str, tuple[float, int, int]]

    def update(self, counts: Mapping[str, CountsRow], now: float) -> dict[str, tuple[float, float]]:
        rates: dict[str, tuple[float, float]] = {}
        for name, row in counts.items():
            before = self.previous.get(name)
            if before is not None and now > before[0]:
                elapsed = now - before[0]
                rates[name] = ((row.total - before[1]) / elapsed, (row.dead_letter - before[2]) / elapsed)
            self.previous[name] = (now, row.total, row.dead_letter)
        return rates


def counts_table(counts: Mapping[str, CountsRow], rates: Mapping[str, tuple[float, float]]) -> Table:
    table = Table(title=f"queues at {time.strftime('%H:%M:%S')}")
    for column in (
        "queue",
        "active",
        "locked",
        "dead-lettered",
        "scheduled",
        "total",
        "Δ total/s",
        "Δ DLQ/s",
    ):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, row in sorted(counts.items()):
        total_rate, dead_rate = rates.get(name, (0.0, 0.0))
        table.add_row(
            name,
            str(row.active),
            str(row.locked),
            str(row.dead_letter),
            str(row.scheduled),
            str(row.total),
            f"{total_rate:+.1f}",
            f"{dead_rate:+.1f}",
        )
    return table


async def run_watch(
    connection_string: str,
    *,
    interval_s: float = 1.0,
    duration_s: float | None = None,
    console: Console | None = None,
) -> None:
    """Refresh a live table every `interval_s` until `duration_s` passes (or Ctrl-C)."""
    tracker = RateTracker(previous={})
    loop = asyncio.get_running_loop()
    stop_at = None if duration_s is None else loop.time() + duration_s
    with Live(Table(title="connecting..."), console=console, auto_refresh=False) as live:
        while stop_at is None or loop.time() < stop_at:
            counts = await read_queue_counts(connection_string)
            live.update(counts_table(counts, tracker.update(counts, time.monotonic())), refresh=True)
            await asyncio.sleep(interval_s)
