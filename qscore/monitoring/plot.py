"""Per-window PSI as a picture: a person sees a trend faster than they read a table."""

from __future__ import annotations

from pathlib import Path

from qscore.monitoring.drift import DriftReport

_VERDICT_COLOR = {"ok": "tab:green", "warn": "tab:orange", "drift": "tab:red", "insufficient": "tab:gray"}


def plot_drift(report: DriftReport, path: Path) -> Path:
    """Draw prediction, confidence and feature PSI per window with the thresholds; returns `path`."""
    # The Figure API with the Agg canvas needs no display and never touches pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    windows = report.windows
    positions = list(range(1, len(windows) + 1))
    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    series = {
        "prediction": [w.prediction.psi if w.prediction else float("nan") for w in windows],
        "max probability": [w.confidence.psi if w.confidence else float("nan") for w in windows],
        "worst input feature": [w.worst_feature.psi if w.worst_feature else float("nan") for w in windows],
        "mean input feature": [w.mean_feature_psi for w in windows],
    }
    for label, values in series.items():
        if any(value == value for value in values):  # skip series that are all NaN
            axes.plot(positions, values, marker="o", label=label)
    axes.axhline(report.thresholds.psi_warn, color="tab:orange", linestyle="--", linewidth=1, label="warn")
    axes.axhline(report.thresholds.psi_alert, color="tab:red", linestyle="--", linewidth=1, label="drift")
    for position, window in zip(positions, windows, strict=True):
        axes.axvspan(position - 0.5, position + 0.5, color=_VERDICT_COLOR[window.verdict], alpha=0.08)
    axes.set_yscale("symlog", linthresh=0.1)
    axes.set_ylim(bottom=0)  # PSI is never negative; symlog would otherwise show a mirror half
    axes.set_xlabel("window")
    axes.set_ylabel("PSI (symlog)")
    axes.set_xticks(positions)
    axes.set_title(f"Drift per window against {report.reference}")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
