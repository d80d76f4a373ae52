"""`qscore watch`: live queue counts from the bus and how fast each queue grows or drains.

Counts come from `ServiceBusAdministrationClient.list_queues_runtime_properties`, the public API
Azure serves, so the same code watches a namespace in Azure and the local endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

COLUMNS = ("queue", "active", "dead-lettered", "scheduled", "total", "Δ total/s", "Δ DLQ/s")


class CountsRow(Protocol):
    """Per-queue counts, as `QueueCounts` below carries them."""

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


@dataclass(frozen=True)
class QueueCounts:
    """A queue's counts from `ServiceBusAdministrationClient` runtime properties. The service does not
    report locked messages separately (they are in `active_message_count`), so `locked` is 0."""

    active: int
    locked: int
    dead_letter: int
    scheduled: int
    total: int


class WatchError(Exception):
    """The bus could not be read (bad address, refused credentials): one line for the user."""


def _admin_client(connection_string: str) -> Any:
    from azure.servicebus.management import ServiceBusAdministrationClient

    options: dict[str, Any] = {}
    if "usedevelopmentemulator=true" in connection_string.replace(" ", "").lower():
        # The local endpoint (and the Service Bus emulator) answer https with a self-signed
        # certificate on loopback; Azure is always verified.
        options["connection_verify"] = False
    return ServiceBusAdministrationClient.from_connection_string(connection_string, **options)


def _read_counts_blocking(connection_string: str) -> dict[str, QueueCounts]:
    import warnings

    from azure.core.exceptions import AzureError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning for the emulator only
            with _admin_client(connection_string) as admin:
                return {
                    props.name: QueueCounts(
                        active=props.active_message_count,
                        locked=0,
                        dead_letter=props.dead_letter_message_count,
                        scheduled=props.scheduled_message_count,
                        total=props.total_message_count,
                    )
                    for props in admin.list_queues_runtime_properties()
                }
    except (AzureError, ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WatchError(f"cannot read queue counts: {message}") from None


async def read_queue_counts(connection_string: str) -> Mapping[str, CountsRow]:
    """Every queue's counts through the public administration API (works against Azure too)."""
    return await asyncio.to_thread(_read_counts_blocking, connection_string)


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
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, row in sorted(counts.items()):
        total_rate, dead_rate = rates.get(name, (0.0, 0.0))
        table.add_row(
            name,
            str(row.active),
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
