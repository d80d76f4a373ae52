"""Rich tables and progress bars for `qscore scale-sim` (kept apart from the command's logic)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from qscore_tools.scaling.config import ScalerSpec
from qscore_tools.scaling.recommend import Recommendation
from qscore_tools.scaling.simulator import SimulationResult

console = Console()


@contextmanager
def progress_bar() -> Iterator[tuple[Progress, TaskID]]:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        yield progress, progress.add_task("working", total=None)


def _fmt_drain(seconds: int | None) -> str:
    return "never (backlog left at the end)" if seconds is None else f"{seconds} s"


def print_summary(result: SimulationResult, *, overlay: str, traffic: str, rate_source: str) -> None:
    spec, summary = result.spec, result.summary
    table = Table(title=f"scale-sim: {overlay}/{spec.name}, {traffic}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("messageCount / activation", f"{spec.message_count} / {spec.activation_message_count}")
    table.add_row("replicas min..max", f"{spec.min_replicas}..{spec.max_replicas}")
    table.add_row("polling / cooldown", f"{spec.polling_interval_s} s / {spec.cooldown_period_s} s")
    table.add_row("per-replica rate", f"{result.settings.per_replica_rate:g} msg/s ({rate_source})")
    table.add_row("time to drain (from peak backlog)", _fmt_drain(summary.drain_time_s))
    table.add_row("peak replicas", str(summary.peak_replicas))
    table.add_row("peak backlog", f"{summary.peak_backlog:,.0f} messages")
    table.add_row("queue age p99", f"{summary.queue_age_p99_s:g} s")
    table.add_row("replica-seconds", f"{summary.replica_seconds:,.0f}")
    if summary.messages_unserved >= 1:
        table.add_row("unserved at end", f"{summary.messages_unserved:,.0f} messages")
    console.print(table)


def print_recommendation(advice: Recommendation, current: ScalerSpec, *, target_age_s: float) -> None:
    summary = advice.result.summary
    verdict = "meets" if advice.meets_target else "does NOT meet (closest found)"
    console.print(
        f"[bold]recommendation[/bold] ({verdict} queue-age p99 <= {target_age_s:g} s,"
        f" {advice.candidates_tried} candidates simulated):\n"
        f'  messageCount: "{advice.message_count}" (now {current.message_count})\n'
        f"  minReplicaCount: {advice.min_replicas} (now {current.min_replicas})\n"
        f"  maxReplicaCount: {advice.max_replicas} (now {current.max_replicas})\n"
        f"  -> queue age p99 {summary.queue_age_p99_s:g} s, peak replicas {summary.peak_replicas},"
        f" replica-seconds {summary.replica_seconds:,.0f}"
    )
