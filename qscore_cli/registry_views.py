"""Rich tables for `qscore model ...` (kept apart from the command definitions)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from qscore.registry import ModelRegistry
from qscore.registry.store import ModelEntry


def stdout_console() -> Console:
    # Wide enough that tables do not wrap under CliRunner or in CI logs.
    return Console(width=140)


def _flight_text(entry: ModelEntry) -> str:
    if entry.flight is None:
        return "-"
    return f"{entry.flight.mode} v{entry.flight.version} @ {entry.flight.weight:.0%}"


def status_table(models: Mapping[str, ModelEntry]) -> Table:
    table = Table(title="Model registry")
    for column in ("Model", "Production", "Labels", "Flight", "Last change"):
        table.add_column(column)
    for name, entry in sorted(models.items()):
        labels = ", ".join(f"{label}={version}" for label, version in sorted(entry.labels.items())) or "-"
        last = entry.history[-1] if entry.history else None
        last_text = (
            f"{last.action} {last.version or ''} {last.at:%Y-%m-%d %H:%M}".replace("  ", " ") if last else "-"
        )
        table.add_row(name, entry.production or "(newest)", labels, _flight_text(entry), last_text)
    return table


def history_table(model: str, entry: ModelEntry, *, limit: int) -> Table:
    table = Table(title=f"History of {model} (newest first)")
    for column in ("When (UTC)", "Action", "Version", "Note"):
        table.add_column(column)
    for event in reversed(entry.history[-limit:] if limit > 0 else []):
        table.add_row(f"{event.at:%Y-%m-%d %H:%M:%S}", event.action, event.version or "-", event.detail or "")
    return table


def route_counts(
    store: ModelRegistry, model: str, *, available: list[str], requests: int
) -> Counter[tuple[str, str | None]]:
    """How `requests` fresh request ids route: (answering version, shadow version) -> count."""
    counts: Counter[tuple[str, str | None]] = Counter()
    for _ in range(requests):
        route = store.resolve(model, None, available=available, routing_key=str(uuid.uuid4()))
        counts[(route.version, route.shadow_version)] += 1
    return counts


def routes_table(model: str, counts: Counter[tuple[str, str | None]], requests: int) -> Table:
    table = Table(title=f"Routing of {requests} request ids for {model}")
    for column in ("Answered by", "Shadow", "Requests", "Share"):
        table.add_column(column, justify="right" if column in ("Requests", "Share") else "left")
    for (version, shadow), count in sorted(counts.items(), key=lambda item: -item[1]):
        table.add_row(f"v{version}", f"v{shadow}" if shadow else "-", str(count), f"{count / requests:.1%}")
    return table
