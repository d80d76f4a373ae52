"""`qscore model drift`: read the interaction log, compare windows with a reference, show it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from qscore.monitoring import (
    DriftReport,
    DriftThresholds,
    InteractionRecord,
    Sample,
    StatisticDrift,
    default_reference_path,
    drift_report,
    log_files,
    select_records,
)
from qscore.monitoring.records import ALL_ROUTES, SERVED_ROUTES
from qscore_cli.errors import UserError
from qscore_cli.registry_views import stdout_console

DEFAULT_WINDOW_RECORDS = 500
# The digits held-out set (data/digits_test.npz) and any --reference .npz: input and labels keys.
DIGITS_INPUT, DIGITS_LABELS = "pixels", "labels"
_VERDICT_STYLE = {"ok": "green", "warn": "yellow", "drift": "bold red", "insufficient": "dim"}


def read_log(path: Path, console: Console) -> list[InteractionRecord]:
    """Every record of the log and its rotated parts, with a progress bar by bytes read."""
    files = log_files(path)
    if not files:
        raise UserError(f"no interaction log at {path} (set QSCORE_INTERACTION_LOG on the workers)")
    records: list[InteractionRecord] = []
    with Progress(
        TextColumn("reading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar in a log file or a pipe is noise
    ) as progress:
        task = progress.add_task(str(path), total=sum(file.stat().st_size for file in files))
        for file in files:
            with file.open("rb") as handle:
                for line in handle:
                    progress.advance(task, len(line))
                    try:
                        records.append(InteractionRecord.model_validate(json.loads(line)))
                    except ValueError:
                        continue  # a torn last line from a killed writer
    return records


def load_reference(reference: str, model: str | None) -> Sample | None:
    """None means: use the first window."""
    if reference == "first-window":
        return None
    if reference == "auto":
        path = default_reference_path()
        return (
            Sample.from_npz(path, features_key=DIGITS_INPUT, labels_key=DIGITS_LABELS)
            if model in (None, "digits") and path is not None
            else None
        )
    path = Path(reference)
    if not path.is_file():
        raise UserError(
            f"reference {reference!r} is neither 'auto', 'first-window' nor an existing .npz file"
        )
    try:
        return Sample.from_npz(path, features_key=DIGITS_INPUT, labels_key=DIGITS_LABELS)
    except (KeyError, ValueError, OSError) as exc:
        raise UserError(f"cannot use {path} as a reference: {str(exc).splitlines()[0]}") from None


def _routes(route: str) -> tuple[str, ...]:
    if route == "served":
        return SERVED_ROUTES
    if route == "all":
        return ALL_ROUTES
    if route not in ALL_ROUTES:
        raise UserError(f"--route must be served, all or one of {', '.join(ALL_ROUTES)}; not {route!r}")
    return (route,)


def _number(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # NaN when a sample was too small


def _statistic_cells(statistic: StatisticDrift | None) -> tuple[str, str]:
    if statistic is None:
        return "-", "-"
    return _number(statistic.psi), _number(statistic.ks)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m-%d %H:%M:%S")


def drift_table(report: DriftReport) -> Table:
    table = Table(
        title=f"Drift against {report.reference} (PSI warn {report.thresholds.psi_warn}, "
        f"drift {report.thresholds.psi_alert}; KS at alpha {report.thresholds.ks_alpha})"
    )
    columns = (
        "#",
        "From (UTC)",
        "To",
        "Requests",
        "Rows",
        "Pred PSI",
        "Pred KS",
        "Conf PSI",
        "Worst feature",
        "Features drift/warn",
        "Verdict",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("From (UTC)", "To", "Worst feature") else "right"
        )
    for index, window in enumerate(report.windows, start=1):
        worst = window.worst_feature
        worst_text = f"{worst.name} {worst.psi:.3f}" if worst else "-"
        flagged = f"{len(window.flagged_features('drift'))}/{len(window.flagged_features('warn'))}"
        verdict = window.verdict
        table.add_row(
            str(index),
            _time(window.start),
            _time(window.end),
            str(window.interactions),
            str(window.rows),
            *_statistic_cells(window.prediction),
            _statistic_cells(window.confidence)[0],
            worst_text,
            flagged if window.features else "-",
            f"[{_VERDICT_STYLE[verdict]}]{verdict}[/]",
        )
    return table


def read_source(
    log: Path | None, source: str | None, model: str | None, console: Console
) -> list[InteractionRecord]:
    """The records of a file log (`--log`) or a Blob log (`--source`, a container URL)."""
    if (log is None) == (source is None):
        raise UserError("give one of --log (a JSONL file) or --source (a Blob container URL)")
    if log is not None:
        return read_log(log, console)
    from qscore.monitoring.blob_log import read_blob_records

    assert source is not None
    try:
        records = read_blob_records(source, model=model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # unreachable account, no such container, no rights
        raise UserError(f"cannot read the interaction log at {source}: {str(exc).splitlines()[0]}") from None
    if not records:
        raise UserError(f"no interaction records under {source}")
    return records


def run_drift(
    *,
    log: Path | None,
    source: str | None = None,
    model: str | None,
    version: str | None,
    route: str,
    reference: str,
    window_s: float | None,
    window_records: int | None,
    psi_warn: float,
    psi_alert: float,
    plot: Path | None,
) -> str:
    """Print the drift table (and draw the plot); returns the overall verdict."""
    if psi_warn <= 0 or psi_alert < psi_warn:
        raise UserError("thresholds need 0 < --psi-warn <= --psi-alert")
    console = stdout_console()
    records = read_source(log, source, model, console)
    selected = select_records(records, model=model, version=version, routes=_routes(route))
    if not selected:
        raise UserError(
            f"the log {log or source} has no scored interactions for "
            f"model={model or 'any'} version={version or 'any'} route={route}"
        )
    models = {record.model for record in selected}
    if len(models) > 1:
        raise UserError(f"the log mixes models {sorted(models)}; choose one with --model")
    baseline = load_reference(reference, next(iter(models)))
    report = drift_report(
        selected,
        reference=baseline,
        window_s=window_s,
        window_records=None if window_s else (window_records or DEFAULT_WINDOW_RECORDS),
        thresholds=DriftThresholds(psi_warn=psi_warn, psi_alert=psi_alert),
    )
    if not report.windows:
        raise UserError(
            "only one window in the log: nothing to compare with the first window; use smaller windows"
        )
    console.print(drift_table(report))
    verdict = report.verdict
    console.print(f"overall: [{_VERDICT_STYLE[verdict]}]{verdict}[/] over {len(report.windows)} window(s)")
    if plot is not None:
        from qscore.monitoring.plot import plot_drift

        plot_drift(report, plot)
        console.print(f"plot written to {plot}")
    return verdict
