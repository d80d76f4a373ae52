"""Model quality as metrics: per model version, the latest judged window's drift (largest PSI
of prediction, confidence or any input feature against the reference) and feedback accuracy,
beside the per-model thresholds they are judged by, as OpenMetrics text.

`qscore model watch` (the scheduled job, deploy/components/model-quality) computes them over the
interaction log and writes or pushes this text; deploy/monitoring/qscore-model-quality.rules.yaml
alerts when a version's PSI is above its model's threshold or its accuracy below its model's
minimum. Exporting the thresholds with the values keeps them per model, set where the job is
configured, and lets one alert rule serve every model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.openmetrics.exposition import generate_latest

if TYPE_CHECKING:  # feedback.py needs pyarrow; judging drift alone must not
    from qscore.monitoring.drift import DriftReport, WindowDrift
    from qscore.monitoring.feedback import AccuracyReport, AccuracyWindow


@dataclass(frozen=True)
class QualityThresholds:
    """One model's limits: drift above `psi_alert`, accuracy below `min_accuracy` alert."""

    psi_alert: float
    min_accuracy: float | None = None
    min_rows: int = 20  # windows with fewer rows (drift: the report's own minimum) are not judged


def worst_psi(window: WindowDrift) -> float:
    statistics = [s for s in (window.prediction, window.confidence, *window.features) if s is not None]
    return max((s.psi for s in statistics if math.isfinite(s.psi)), default=0.0)


def latest_judged_window(report: DriftReport) -> WindowDrift | None:
    judged = [w for w in report.windows if w.rows >= report.thresholds.min_rows]
    return max(judged, key=lambda w: w.end, default=None)


def latest_accuracy(report: AccuracyReport, min_rows: int) -> dict[str, AccuracyWindow]:
    latest: dict[str, AccuracyWindow] = {}
    for window in report.windows:
        if window.rows >= min_rows and (
            window.version not in latest or window.end > latest[window.version].end
        ):
            latest[window.version] = window
    return latest


def quality_registry(
    model: str,
    drift: Mapping[str, DriftReport],
    accuracy: AccuracyReport | None,
    thresholds: QualityThresholds,
    *,
    now: float | None = None,
) -> CollectorRegistry:
    """The gauges for `model`: `drift` maps version -> its drift report."""
    registry = CollectorRegistry()
    labels = ["model", "version"]
    psi = Gauge(
        "qscore_model_drift_psi",
        "Largest PSI (prediction, confidence, input features) of the latest window vs the reference",
        labels,
        registry=registry,
    )
    drift_rows = Gauge("qscore_model_drift_window_rows", "Rows in that window", labels, registry=registry)
    accuracy_gauge = Gauge(
        "qscore_model_feedback_accuracy",
        "Accuracy of the latest window with ground truth (feedback joined to the log)",
        labels,
        registry=registry,
    )
    accuracy_rows = Gauge(
        "qscore_model_feedback_rows", "Joined rows in that window", labels, registry=registry
    )
    psi_threshold = Gauge(
        "qscore_model_drift_psi_threshold",
        "PSI above which the model is drifting",
        ["model"],
        registry=registry,
    )
    run = Gauge(
        "qscore_model_quality_run_timestamp_seconds",
        "When the job last judged the model",
        ["model"],
        registry=registry,
    )
    for version, report in sorted(drift.items()):
        window = latest_judged_window(report)
        if window is not None:
            psi.labels(model, version).set(worst_psi(window))
            drift_rows.labels(model, version).set(window.rows)
    if accuracy is not None:
        for version, judged in sorted(latest_accuracy(accuracy, thresholds.min_rows).items()):
            accuracy_gauge.labels(model, version).set(judged.accuracy)
            accuracy_rows.labels(model, version).set(judged.rows)
    psi_threshold.labels(model).set(thresholds.psi_alert)
    if thresholds.min_accuracy is not None:
        minimum = Gauge(
            "qscore_model_accuracy_threshold",
            "Accuracy below which the model alerts",
            ["model"],
            registry=registry,
        )
        minimum.labels(model).set(thresholds.min_accuracy)
    run.labels(model).set(time.time() if now is None else now)
    return registry


def openmetrics_text(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))
