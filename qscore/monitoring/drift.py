"""Drift reports: time windows of the interaction log compared with a reference.

The reference is the distribution the model was built on (a held-out set as .npz: one input
array and the true labels standing in for the prediction distribution of an accurate model;
the caller names both keys) or, for any model, the log's first window. Every input a record
kept whole is compared per value; the prediction is the output the model names as its class.

A statistic is flagged only when PSI is large *and* the KS test says the difference is more
than sampling noise: PSI alone over-reports on small windows, KS alone flags shifts too small
to matter on large ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from qscore.monitoring.records import InteractionRecord
from qscore.monitoring.statistics import ks_critical, ks_statistic, psi

Severity = Literal["ok", "warn", "drift", "insufficient"]
_RANK: dict[Severity, int] = {"insufficient": 0, "ok": 1, "warn": 2, "drift": 3}
DEFAULT_REFERENCE_NPZ = Path("data/digits_test.npz")
_CHECKOUT_REFERENCE_NPZ = Path(__file__).resolve().parents[2] / DEFAULT_REFERENCE_NPZ


def default_reference_path() -> Path | None:
    """data/digits_test.npz under the current directory, else under the checkout; None if absent."""
    for candidate in (DEFAULT_REFERENCE_NPZ, _CHECKOUT_REFERENCE_NPZ):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class DriftThresholds:
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    ks_alpha: float = 0.01
    min_rows: int = 50


@dataclass(frozen=True)
class Sample:
    """Rows to compare: input features (rows x features), predicted classes, top class confidence."""

    features: np.ndarray | None
    feature_names: list[str]
    predictions: np.ndarray
    confidence: np.ndarray
    source: str = ""

    @property
    def rows(self) -> int:
        return int(self.predictions.size) if self.predictions.size else self.feature_rows

    @property
    def feature_rows(self) -> int:
        return 0 if self.features is None else int(self.features.shape[0])

    @classmethod
    def from_npz(cls, path: Path, *, features_key: str, labels_key: str) -> Sample:
        """A reference from a held-out set: the input array `features_key`, and the labels
        `labels_key` as the prediction reference (the caller names both: they are the model's)."""
        with np.load(path) as data:
            features = np.asarray(data[features_key], dtype=np.float64)
            labels = np.asarray(data[labels_key]).reshape(-1) if labels_key in data else np.empty(0)
        features = features.reshape(features.shape[0], -1)
        names = [f"{features_key}[{index}]" for index in range(features.shape[1])]
        return cls(features, names, labels, np.empty(0), source=str(path))

    @classmethod
    def from_records(cls, records: Sequence[InteractionRecord], *, input_name: str | None = None) -> Sample:
        """Rows of logged interactions. Features: every input the records kept whole (or only
        `input_name`), side by side, one column per value; records lacking one of them are left out."""
        names_in_order = dict.fromkeys(key for record in records for key in record.inputs)
        inputs = [input_name] if input_name else list(names_in_order)
        blocks, widths = [], {}
        for record in records:
            if not inputs or any(name not in record.inputs for name in inputs):
                continue
            parts = [np.asarray(record.inputs[name], dtype=np.float64) for name in inputs]
            if len({part.shape[0] for part in parts}) != 1:
                continue  # inputs with different row counts cannot be paired row by row
            widths = {name: part.shape[1] for name, part in zip(inputs, parts, strict=True)}
            blocks.append(np.concatenate(parts, axis=1))
        same_width = [block for block in blocks if block.shape[1] == sum(widths.values())]
        features = np.concatenate(same_width, axis=0) if same_width else None
        names = [f"{name}[{index}]" for name in inputs for index in range(widths.get(name, 0))]
        names = names if features is not None else []
        predictions = np.asarray([value for record in records for value in record.prediction])
        confidence = np.asarray([value for record in records for value in record.max_probability])
        return cls(features, names, predictions, confidence)


@dataclass(frozen=True)
class StatisticDrift:
    name: str
    psi: float
    ks: float
    ks_critical: float
    severity: Severity


@dataclass(frozen=True)
class WindowDrift:
    start: float
    end: float
    interactions: int
    rows: int
    prediction: StatisticDrift | None
    confidence: StatisticDrift | None
    features: list[StatisticDrift] = field(default_factory=list)

    @property
    def verdict(self) -> Severity:
        statistics = [s for s in (self.prediction, self.confidence, *self.features) if s is not None]
        return max((s.severity for s in statistics), key=_RANK.__getitem__, default="insufficient")

    @property
    def worst_feature(self) -> StatisticDrift | None:
        scored = [f for f in self.features if not np.isnan(f.psi)]
        return max(scored, key=lambda f: f.psi, default=None)

    @property
    def mean_feature_psi(self) -> float:
        values = [f.psi for f in self.features if not np.isnan(f.psi)]
        return float(np.mean(values)) if values else float("nan")

    def flagged_features(self, severity: Severity = "drift") -> list[StatisticDrift]:
        return [f for f in self.features if f.severity == severity]


@dataclass(frozen=True)
class DriftReport:
    reference: str
    thresholds: DriftThresholds
    windows: list[WindowDrift]

    @property
    def verdict(self) -> Severity:
        return max((w.verdict for w in self.windows), key=_RANK.__getitem__, default="insufficient")


def compare_statistic(
    name: str, reference: np.ndarray, current: np.ndarray, thresholds: DriftThresholds, *, categorical: bool
) -> StatisticDrift:
    critical = ks_critical(reference.size, current.size, thresholds.ks_alpha)
    if reference.size < thresholds.min_rows or current.size < thresholds.min_rows:
        return StatisticDrift(name, float("nan"), float("nan"), critical, "insufficient")
    index = psi(reference, current, categorical=categorical)
    ks = ks_statistic(reference, current)
    significant = ks >= critical
    severity: Severity = "ok"
    if significant and index >= thresholds.psi_alert:
        severity = "drift"
    elif significant and index >= thresholds.psi_warn:
        severity = "warn"
    return StatisticDrift(name, index, ks, critical, severity)


def compare_window(
    reference: Sample,
    window: Sample,
    thresholds: DriftThresholds,
    *,
    start: float,
    end: float,
    interactions: int,
) -> WindowDrift:
    prediction = confidence = None
    if reference.predictions.size and window.predictions.size:
        prediction = compare_statistic(
            "prediction", reference.predictions, window.predictions, thresholds, categorical=True
        )
    if reference.confidence.size and window.confidence.size:
        confidence = compare_statistic(
            "max_probability", reference.confidence, window.confidence, thresholds, categorical=False
        )
    features: list[StatisticDrift] = []
    if (
        reference.features is not None
        and window.features is not None
        and reference.features.shape[1] == window.features.shape[1]
    ):
        features = [
            compare_statistic(
                name, reference.features[:, col], window.features[:, col], thresholds, categorical=False
            )
            for col, name in enumerate(window.feature_names)
        ]
    return WindowDrift(start, end, interactions, window.rows, prediction, confidence, features)


def split_windows(
    records: Sequence[InteractionRecord], *, window_s: float | None = None, window_records: int | None = None
) -> list[list[InteractionRecord]]:
    """Consecutive windows by wall-clock span (aligned to multiples of `window_s`) or by count."""
    ordered = sorted(records, key=lambda record: record.at)
    if window_s:
        windows: dict[int, list[InteractionRecord]] = {}
        for record in ordered:
            windows.setdefault(int(record.at // window_s), []).append(record)
        return [windows[key] for key in sorted(windows)]
    size = window_records or max(len(ordered), 1)
    return [list(ordered[index : index + size]) for index in range(0, len(ordered), size)]


def drift_report(
    records: Sequence[InteractionRecord],
    *,
    reference: Sample | None = None,
    window_s: float | None = None,
    window_records: int | None = None,
    thresholds: DriftThresholds | None = None,
    input_name: str | None = None,
) -> DriftReport:
    """Every window compared with `reference` (default: the first window, then not reported)."""
    limits = thresholds or DriftThresholds()
    windows = split_windows(records, window_s=window_s, window_records=window_records)
    source = reference.source if reference is not None else "first window"
    if reference is None:
        if not windows:
            return DriftReport(source, limits, [])
        reference, windows = Sample.from_records(windows[0], input_name=input_name), windows[1:]
    results = [
        compare_window(
            reference,
            Sample.from_records(window, input_name=input_name),
            limits,
            start=window[0].at,
            end=window[-1].at,
            interactions=len(window),
        )
        for window in windows
    ]
    return DriftReport(source, limits, results)
