"""`qscore model drift | compare | feedback`: reports over the interaction log."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.monitoring import InteractionRecord

LogPath = Annotated[
    Path | None,
    typer.Option(
        "--log", help="Interaction log (default: $QSCORE_INTERACTION_LOG or .qscore/interactions.jsonl)."
    ),
]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _log_path(log: Path | None) -> Path:
    return log or Path(os.environ.get("QSCORE_INTERACTION_LOG", ".qscore/interactions.jsonl"))


def since_epoch(since: str | None) -> float | None:
    """'2h', '30m', '1d' (that long ago) or an ISO time such as 2026-01-31T12:00:00+00:00."""
    if not since:
        return None
    match = _DURATION.match(since)
    if match:
        return time.time() - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return datetime.fromisoformat(since).timestamp()
    except ValueError:
        raise UserError(f"--since wants a duration such as 2h or an ISO time, not {since!r}") from None


def _records(log: Path | None, since: str | None, model: str) -> list[InteractionRecord]:
    from qscore.monitoring import iter_records, log_files

    path = _log_path(log)
    if not log_files(path):
        raise UserError(f"no interaction log at {path} (set QSCORE_INTERACTION_LOG on the workers)")
    start = since_epoch(since)
    records = [r for r in iter_records(path) if r.model == model and (start is None or r.at >= start)]
    if not records:
        raise UserError(
            f"the log {path} has no interactions of {model!r}" + (f" since {since}" if since else "")
        )
    return records


def _production(model: str, store: str | None) -> str | None:
    from qscore.registry.catalog import CatalogError, ModelCatalog

    try:
        return ModelCatalog(store).state(model).aliases.get("production")
    except CatalogError:
        return None  # not registered here: the most-served version stands in


def drift(
    log: Annotated[
        Path | None, typer.Option("--log", help="Interaction log (JSONL; rotated parts are read too).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Blob interaction log instead of --log: http(s)://.../<container>, optionally "
            "/<prefix> after it ($QSCORE_BLOB_CONNECTION or DefaultAzureCredential).",
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (default: all in the log).")] = None,
    version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
    route: Annotated[
        str,
        typer.Option(help="served (production+canary+pinned), production, canary, shadow, pinned or all."),
    ] = "served",
    reference: Annotated[
        str,
        typer.Option(
            help="'auto' (data/digits_test.npz for digits, else first window), 'first-window', "
            "or an .npz with 'pixels' and 'labels'."
        ),
    ] = "auto",
    window_minutes: Annotated[float | None, typer.Option(min=0.0, help="Window by time.")] = None,
    window_records: Annotated[int | None, typer.Option(min=1, help="Window by count (default 500).")] = None,
    psi_warn: Annotated[float, typer.Option(help="PSI for 'warn'.")] = 0.1,
    psi_alert: Annotated[float, typer.Option(help="PSI for 'drift'.")] = 0.25,
    plot: Annotated[Path | None, typer.Option(help="Also draw per-window PSI to this PNG.")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit 1 when any window drifts (for cron alerts).")
    ] = False,
) -> None:
    """Input and prediction drift (PSI, KS) per window of the interaction log against a reference."""
    from qscore_cli.registry_drift import run_drift

    verdict = run_drift(
        log=log,
        source=source,
        model=model,
        version=version,
        route=route,
        reference=reference,
        window_s=window_minutes * 60 if window_minutes else None,
        window_records=window_records,
        psi_warn=psi_warn,
        psi_alert=psi_alert,
        plot=plot,
    )
    if fail_on_drift and verdict == "drift":
        raise typer.Exit(1)


def compare(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    log: LogPath = None,
    since: Annotated[str | None, typer.Option(help="Only interactions since: 2h, 1d or an ISO time.")] = None,
    production: Annotated[
        str | None, typer.Option(help="Production version (default: the registry's alias).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write report.md and report.png here.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="MLflow tracking/registry URI.")] = None,
) -> None:
    """Compare MODEL's versions in the interaction log (canary/shadow flights) with a verdict."""
    from qscore.monitoring.compare import compare_versions
    from qscore.monitoring.compare_report import comparison_markdown, plot_comparison

    records = _records(log, since, model)
    comparison = compare_versions(records, model=model, production=production or _production(model, store))
    image = None
    if output is not None:
        image = plot_comparison(comparison, output / "report.png").name
    markdown = comparison_markdown(comparison, image=image)
    if output is not None:
        (output / "report.md").write_text(markdown)
    typer.echo(markdown)
    if output is not None:
        typer.echo(f"report written to {output / 'report.md'} and {output / 'report.png'}")


def feedback(
    file: Annotated[
        Path, typer.Argument(help="Ground truth: CSV, Parquet or JSONL with request_id[, row], label.")
    ],
    model: Annotated[str, typer.Option(help="Model the feedback is for.")],
    log: LogPath = None,
    label_column: Annotated[str, typer.Option(help="Column with the true value.")] = "label",
    window_minutes: Annotated[
        float | None, typer.Option(min=0.0, help="Accuracy per window of this size.")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw accuracy over time to this PNG.")] = None,
    fail_below: Annotated[
        float | None, typer.Option(help="Exit 1 if any version's accuracy in any window is below this.")
    ] = None,
    min_rows: Annotated[int, typer.Option(min=1, help="Windows with fewer joined rows are not judged.")] = 20,
) -> None:
    """Join late ground truth to the interaction log: accuracy per version per time window."""
    from qscore.monitoring.feedback import FeedbackError, accuracy_report, plot_accuracy, read_feedback
    from qscore_cli.registry_monitor_views import accuracy_table
    from qscore_cli.registry_views import stdout_console

    if not file.is_file():
        raise UserError(f"no feedback file at {file}")
    try:
        truth = read_feedback(file, label_column=label_column)
    except FeedbackError as exc:
        raise UserError(str(exc)) from None
    report = accuracy_report(
        _records(log, None, model), truth, window_s=window_minutes * 60 if window_minutes else None
    )
    if not report.overall:
        raise UserError(f"no feedback row of {file} matches a served interaction of {model!r} in the log")
    console = stdout_console()
    console.print(accuracy_table(report))
    console.print(f"{report.unmatched_feedback} feedback row(s) matched no logged prediction")
    if plot is not None:
        plot_accuracy(report, plot, threshold=fail_below)
        console.print(f"plot written to {plot}")
    if fail_below is not None and report.below(fail_below, min_rows=min_rows):
        failing = ", ".join(
            f"v{w.version} {w.accuracy:.3f}" for w in report.below(fail_below, min_rows=min_rows)
        )
        console.print(f"[bold red]accuracy below {fail_below}[/]: {failing}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(drift)
    app.command()(compare)
    app.command()(feedback)
