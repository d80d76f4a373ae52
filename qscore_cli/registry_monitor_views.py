"""Rich tables for the monitoring reports of `qscore model ...`."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from qscore.monitoring.feedback import AccuracyReport


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def accuracy_table(report: AccuracyReport) -> Table:
    table = Table(title="Accuracy from feedback, per version and window")
    for column in ("Version", "From (UTC)", "To", "Rows", "Accuracy"):
        table.add_column(column, justify="right" if column in ("Rows", "Accuracy") else "left")
    for window in report.windows:
        table.add_row(
            f"v{window.version}",
            _when(window.start),
            _when(window.end),
            str(window.rows),
            f"{window.accuracy:.4f}",
        )
    for version, window in report.overall.items():
        table.add_row(
            f"[bold]v{version} (all)[/]",
            _when(window.start),
            _when(window.end),
            str(window.rows),
            f"[bold]{window.accuracy:.4f}[/]",
        )
    return table
