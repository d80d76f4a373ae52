"""Rich tables for `qscore model ...` (kept apart from the command definitions)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from qscore.registry import ModelRegistry
from qscore.registry.catalog_types import Event, ModelState


def stdout_console() -> Console:
    # Wide enough that tables do not wrap under CliRunner or in CI logs.
    return Console(width=160)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _change(event: Event | None) -> str:
    return f"{_when(event.at)} by {event.by}" if event else "-"


def models_table(states: list[ModelState]) -> Table:
    table = Table(title="Model registry (MLflow)")
    for column in ("Model", "Versions", "Production", "Previous", "Flight", "Production changed"):
        table.add_column(column)
    for state in states:
        flight = state.flight
        flight_text = f"{flight.mode} v{flight.version} @ {flight.weight:.0%}" if flight else "-"
        table.add_row(
            state.name,
            str(len(state.versions)),
            state.aliases.get("production", "-"),
            state.aliases.get("previous", "-"),
            flight_text,
            _change(state.last_change("production")),
        )
    return table


def versions_table(state: ModelState) -> Table:
    table = Table(title=f"Versions of {state.name}")
    for column in ("Version", "Aliases", "Registered (UTC)", "By", "Metrics", "Commit", "Data"):
        table.add_column(column)
    for info in state.versions:
        metrics = ", ".join(f"{key}={value:.4g}" for key, value in sorted(info.metrics.items())) or "-"
        table.add_row(
            info.version,
            ", ".join(state.aliases_of(info.version)) or "-",
            _when(info.created_at),
            info.registered_by or "-",
            metrics,
            info.git_commit[:12] or "-",
            info.data_fingerprint[:12] or "-",
        )
    return table


def history_table(state: ModelState, *, limit: int) -> Table:
    table = Table(title=f"History of {state.name} (newest first)")
    for column in ("When (UTC)", "By", "Action", "Version", "Note"):
        table.add_column(column)
    for event in reversed(state.events[-limit:] if limit > 0 else []):
        table.add_row(_when(event.at), event.by, event.action, event.version or "-", event.detail)
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
