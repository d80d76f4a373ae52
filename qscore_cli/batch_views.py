"""What `qscore batch score` shows: the plan (--dry-run), a progress bar, the summary, errors."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from qscore.batch import BatchObserver

if TYPE_CHECKING:
    from qscore.batch import BatchSummary, JobPlan
    from qscore.batch.status import RunStatus

console = Console(stderr=True)


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="cyan")


class ProgressObserver(BatchObserver):
    """A Rich progress bar: rows done of the total, rows/s, ETA, unscoreable rows so far."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RowsPerSecond(),
            TextColumn("errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("scoring", total=None, errors=0)
        self.errors = 0

    def __enter__(self) -> ProgressObserver:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def started(self, plan: JobPlan, resumed_rows: int) -> None:
        total = None if plan.rows is None else plan.rows - resumed_rows
        if resumed_rows:
            console.print(f"resuming: {resumed_rows:,} rows were finished by an earlier run")
        self.progress.update(self.task, total=total)

    def chunk_finished(self, rows: int, rejected: int) -> None:
        self.errors += rejected
        self.progress.update(self.task, advance=rows, errors=self.errors)

    def assembling(self) -> None:
        self.progress.update(self.task, description="assembling")


def print_plan(plan: JobPlan) -> None:
    out = Console()
    out.print("[bold]dry run[/bold]: nothing is scored")
    for line in plan.describe():
        out.print("  " + line, markup=False, highlight=False)


def print_summary(summary: BatchSummary) -> None:
    out = Console()
    if summary.already_complete:
        out.print(f"{summary.output} is already complete (its manifest says so); nothing to do")
    table = Table(title="batch summary", show_header=False)
    table.add_row("output", summary.output)
    if summary.rejected_output:
        table.add_row("unscoreable rows", summary.rejected_output)
    table.add_row("rows", f"{summary.rows_total:,} ({summary.rows_resumed:,} from an earlier run)")
    table.add_row("scored", f"{summary.rows_scored:,}")
    table.add_row("errors", f"{summary.rows_rejected:,}")
    if not summary.already_complete:
        table.add_row("throughput", f"{summary.rows_per_s:,.0f} rows/s over {summary.elapsed_s:.1f} s")
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.stage_s.items())
        table.add_row("time per stage", stages + " (summed over chunks in flight)")
    if summary.chunks_by_reference:
        table.add_row("by reference", f"{summary.chunks_by_reference:,} chunks through the claim-check")
    versions = ", ".join(f"v{k}: {v:,}" for k, v in sorted(summary.versions.items()))
    table.add_row("rows per version", versions or "-")
    out.print(table)


def print_status(runs: list[RunStatus]) -> None:
    out = Console()
    table = Table(title="batch status")
    for column in ("shard", "state", "chunks done", "rows done", "output"):
        table.add_column(column)
    for run in runs:
        chunks = f"{run.chunks_done:,}" + ("" if run.chunks is None else f" of {run.chunks:,}")
        table.add_row(run.shard or "-", run.state, chunks, f"{run.rows_done:,}", run.output)
    out.print(table)
    done = sum(run.state == "done" for run in runs)
    out.print(f"{done} of {len(runs)} done", highlight=False)


def user_message(exc: BaseException) -> str | None:
    """One line for a failure a person can fix; None for a bug (it keeps its traceback)."""
    from azure.core.exceptions import AzureError
    from azure.servicebus.exceptions import ServiceBusError

    from qscore.batch import InputError, ManifestMismatch, MappingError
    from qscore.batch.blob import BlobError
    from qscore.batch.engines import ScoringFailed
    from qscore.batch.model_config import ModelConfigError
    from qscore.inference import InferenceError
    from qscore.registry import RegistryError

    if isinstance(exc, InferenceError):
        return f"Triton: {_first_line(exc)}"
    if isinstance(exc, ServiceBusError | AzureError):
        return f"Azure: {_first_line(exc)}"
    known = (InputError, MappingError, ManifestMismatch, BlobError, ModelConfigError, RegistryError)
    if isinstance(exc, (*known, ScoringFailed, FileNotFoundError, ValueError)):
        return _first_line(exc)
    if isinstance(exc, BaseExceptionGroup):
        # Several chunks in flight failed for one cause (Triton went away): report the first.
        return user_message(exc.exceptions[0])
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
