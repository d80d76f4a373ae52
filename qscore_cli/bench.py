"""`qscore bench`: the queue path measured against Triton's own ceiling, in one run.

Heavy imports (numpy, tritonclient, the azure SDK, matplotlib) happen inside the command so
`qscore --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qscore_cli.errors import UserError


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    app.command("bench")(bench)


def bench(
    quick: bool = typer.Option(False, "--quick", help="Short form (a few minutes): what CI runs."),
    models: list[str] | None = typer.Option(
        None, "--model", "-m", help="Model to benchmark (repeatable). Default: digits and bench_mlp."
    ),
    duration_s: float | None = typer.Option(None, "--duration", help="Seconds measured per load point."),
    warmup_s: float | None = typer.Option(None, "--warmup", help="Seconds of warm-up before each point."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (replicas)."),
    producers: int | None = typer.Option(None, "--producers", help="Load-generator processes, queue path."),
    max_batch_size: int | None = typer.Option(None, help="Worker max batch size (rows per Triton call)."),
    max_batch_delay_ms: float | None = typer.Option(None, help="Worker max batch delay (ms)."),
    output: Path | None = typer.Option(None, "--output", help="Results directory (default bench/results)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots next to the JSON."),
    keep_logs: bool = typer.Option(
        False, "--keep-logs", help="Keep Triton and worker logs under the output."
    ),
    profile: bool = typer.Option(
        False, "--profile", help="py-spy the worker and bus at every closed-loop level (pip install py-spy)."
    ),
    bus_latency_ms: float | None = typer.Option(
        None,
        "--bus-latency-ms",
        help="Also measure the queue path with the bus this many ms away, one way (emulated), and "
        "report each figure at 0 and at it. Default 5 (Azure, same region); 0 turns it off.",
    ),
) -> None:
    """Measure the direct-Triton ceiling, the queue path, batching gain and per-message cost."""
    import asyncio

    from qscore_tools.bench.settings import BenchSettings

    base = BenchSettings.quick_settings() if quick else BenchSettings()
    try:
        settings = base.with_overrides(
            models=tuple(models) if models else None,
            duration_s=duration_s,
            warmup_s=warmup_s,
            workers=workers,
            producer_processes=producers,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            output_dir=output,
            keep_logs=keep_logs or None,
            profile=profile or None,
            bus_latency_ms=bus_latency_ms,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_models(settings.models)
    if settings.profile:
        check_profiler()
    document, paths = asyncio.run(run_with_progress(settings, plots=plots))
    show_summary(document, paths)


def check_models(models: tuple[str, ...]) -> None:
    from qscore_local.triton.repository import DEFAULT_REPO, RepositoryError, list_models

    try:
        available = list_models(DEFAULT_REPO)
    except RepositoryError as exc:
        raise UserError(str(exc)) from None
    unknown = [model for model in models if model not in available]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; triton_repo/ has {', '.join(available)}")


def check_profiler() -> None:
    from qscore_tools.bench.profiling import ProfilerUnavailable, py_spy_binary

    try:
        py_spy_binary()
    except ProfilerUnavailable as exc:
        raise UserError(str(exc)) from None


class RichProgress:
    """A progress bar over the run's phases, with the latest measured point underneath."""

    def __init__(self, progress: Any, task: Any, console: Any) -> None:
        self.progress, self.task, self.console = progress, task, console
        self.started = False

    def phase(self, description: str) -> None:
        if self.started:
            self.progress.advance(self.task)
        self.started = True
        self.progress.update(self.task, description=description)

    def point(self, text: str) -> None:
        self.console.print(f"  {text}", highlight=False)


async def run_with_progress(settings: Any, *, plots: bool) -> tuple[dict[str, Any], list[Path]]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from qscore_tools.bench.report import write_results
    from qscore_tools.bench.runner import run_bench, total_phases

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting", total=total_phases(settings))
        try:
            run = await run_bench(settings, RichProgress(progress, task, progress.console))
        except Exception as exc:
            raise UserError(friendly_failure(exc)) from None
        progress.update(task, completed=total_phases(settings), description="writing results")
        files, document = write_results(run, settings.output_dir, plots=plots)
    return document, [files.json_path, files.markdown_path, *files.plots]


def friendly_failure(exc: Exception) -> str:
    """One line for a part of the stack that did not start or a load generator that failed."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"benchmark failed ({type(exc).__name__}): {first_line[:400]}"


def show_summary(document: dict[str, Any], paths: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    figures = Table(title="qscore bench: ceiling vs queue path")
    for column in (
        "model",
        "direct ceiling /s",
        "queue peak /s",
        "ratio",
        "p99 at peak ms",
        "worker CPU-s/1k",
    ):
        figures.add_column(column, justify="right" if column != "model" else "left")
    for name, model in document["models"].items():
        ceiling, peak = model["ceiling"] or {}, model["queue_peak"] or {}
        worker = (peak.get("costs") or {}).get("worker") or {}
        figures.add_row(
            name,
            _num(ceiling.get("samples_per_s"), 0),
            _num(peak.get("samples_per_s"), 0),
            _num(model["queue_to_ceiling_ratio"], 3),
            _num((peak.get("latency") or {}).get("p99_ms"), 1),
            _num(worker.get("cpu_s_per_1000"), 3),
        )
    console.print(figures)
    goals = Table(title="goals")
    for column in ("goal", "target", "measured", "met"):
        goals.add_column(column)
    for goal in document["goals"]:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}[goal["met"]]
        goals.add_row(goal["name"], goal["target"], _num(goal["measured"], 2), met)
    console.print(goals)
    for path in paths:
        console.print(f"wrote {path}", highlight=False)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
