"""Model quality over time: late ground truth joined to the interaction log.

Feedback is a table keyed by `request_id` (and `row`, the row inside a multi-row request,
0 when absent) with the true value in a label column. Read with pyarrow from CSV, Parquet or
JSON Lines. Accuracy is the share of joined rows whose logged prediction equals the label, per
version and per time window (by the time the prediction was made).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qscore.monitoring.records import InteractionRecord

if TYPE_CHECKING:
    import pyarrow as pa

FEEDBACK_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".json": "json"}


class FeedbackError(Exception):
    """A feedback file that cannot be read or lacks the key/label columns."""


def read_feedback(path: Path, *, label_column: str) -> dict[tuple[str, int], float]:
    """(request_id, row) -> true value."""
    kind = FEEDBACK_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise FeedbackError(f"{path}: feedback must be .csv, .parquet or .jsonl")
    try:
        table = _read_table(path, kind)
    except (OSError, ValueError) as exc:
        raise FeedbackError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = [name for name in ("request_id", label_column) if name not in table.column_names]
    if missing:
        raise FeedbackError(
            f"{path} has no column {', '.join(missing)} (columns: {', '.join(table.column_names)})"
        )
    ids = [str(value) for value in table.column("request_id").to_pylist()]
    rows = table.column("row").to_pylist() if "row" in table.column_names else [0] * len(ids)
    labels = table.column(label_column).to_pylist()
    return {
        (request_id, int(row or 0)): float(label)
        for request_id, row, label in zip(ids, rows, labels, strict=True)
        if label is not None
    }


def _read_table(path: Path, kind: str) -> pa.Table:
    if kind == "csv":
        from pyarrow import csv

        options = csv.ConvertOptions(column_types={"request_id": "string"})
        return csv.read_csv(path, convert_options=options)
    if kind == "parquet":
        from pyarrow import parquet

        return parquet.read_table(path)
    from pyarrow import json

    return json.read_json(path)


@dataclass(frozen=True)
class AccuracyWindow:
    version: str
    start: float
    end: float
    rows: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else float("nan")


@dataclass(frozen=True)
class AccuracyReport:
    windows: list[AccuracyWindow]
    overall: dict[str, AccuracyWindow]  # version -> all its joined rows
    unmatched_feedback: int

    def below(self, threshold: float, *, min_rows: int = 1) -> list[AccuracyWindow]:
        return [w for w in self.windows if w.rows >= min_rows and w.accuracy < threshold]


def accuracy_report(
    records: Sequence[InteractionRecord],
    feedback: dict[tuple[str, int], float],
    *,
    window_s: float | None = None,
) -> AccuracyReport:
    """Accuracy per served version per window (one window when `window_s` is None)."""
    tallies: dict[tuple[str, int], list[float]] = {}  # (version, window) -> [start, end, rows, correct]
    matched: set[tuple[str, int]] = set()
    for record in records:
        if record.route == "shadow" or record.status != "ok":
            continue
        window = int(record.at // window_s) if window_s else 0
        for row, predicted in enumerate(record.prediction):
            truth = feedback.get((record.request_id, row))
            if truth is None:
                continue
            matched.add((record.request_id, row))
            tally = tallies.setdefault((record.version, window), [record.at, record.at, 0, 0])
            tally[0], tally[1] = min(tally[0], record.at), max(tally[1], record.at)
            tally[2] += 1
            tally[3] += int(float(predicted) == truth)
    windows = [
        AccuracyWindow(version, start, end, int(rows), int(correct))
        for (version, _), (start, end, rows, correct) in sorted(
            tallies.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]
    overall: dict[str, AccuracyWindow] = {}
    for w in windows:
        seen = overall.get(w.version)
        overall[w.version] = (
            w
            if seen is None
            else AccuracyWindow(
                w.version,
                min(seen.start, w.start),
                max(seen.end, w.end),
                seen.rows + w.rows,
                seen.correct + w.correct,
            )
        )
    return AccuracyReport(windows, dict(sorted(overall.items())), len(feedback) - len(matched))


def plot_accuracy(report: AccuracyReport, path: Path, *, threshold: float | None = None) -> Path:
    from datetime import UTC, datetime

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for version in report.overall:
        mine = [w for w in report.windows if w.version == version]
        times = [datetime.fromtimestamp((w.start + w.end) / 2, UTC) for w in mine]
        axes.plot(times, [w.accuracy for w in mine], marker="o", label=f"v{version}")  # type: ignore[arg-type]
    if threshold is not None:
        axes.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label="fail below")
    axes.set_ylabel("accuracy")
    axes.set_title("Accuracy per version over time (from feedback)")
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
