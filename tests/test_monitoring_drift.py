"""Drift statistics and reports: a shifted distribution is flagged, an unshifted one is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qscore.monitoring import (
    DriftThresholds,
    InteractionRecord,
    Sample,
    compare_window,
    drift_report,
    ks_critical,
    ks_statistic,
    psi,
    split_windows,
)
from qscore.monitoring.plot import plot_drift

DIGITS_NPZ = Path(__file__).resolve().parents[1] / "data" / "digits_test.npz"
FEATURES = 8


def _population(rng: np.random.Generator, rows: int, *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Digits-like rows: integer pixel intensities 0..16, some always 0; labels 0..9."""
    features = np.clip(np.round(rng.normal(6 + shift, 4, size=(rows, FEATURES))), 0, 16)
    features[:, 0] = 0 if shift == 0 else np.clip(np.round(shift), 0, 16)
    labels = rng.integers(0, 10, rows)
    return features, labels


def _records(
    features: np.ndarray, labels: np.ndarray, *, start: float, confidence: float = 0.9
) -> list[InteractionRecord]:
    return [
        InteractionRecord(
            at=start + index,
            request_id=f"{start}-{index}",
            model="digits",
            version="2",
            inputs={"pixels": [row.tolist()]},
            prediction=[int(label)],
            max_probability=[confidence],
        )
        for index, (row, label) in enumerate(zip(features, labels, strict=True))
    ]


def test_statistics_on_identical_and_shifted_samples() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 5000)
    assert psi(reference, reference) == pytest.approx(0.0)
    assert ks_statistic(reference, reference) == 0.0
    assert psi(reference, rng.normal(0, 1, 5000)) < 0.02
    assert psi(reference, rng.normal(1, 1, 5000)) > 0.25
    assert ks_statistic(reference, rng.normal(1, 1, 5000)) > ks_critical(5000, 5000)
    # A feature that never moved in the reference (a border pixel) and now does is drift.
    assert psi(np.zeros(500), np.full(500, 3.0)) > 1.0
    assert psi(np.array([0, 1, 2] * 100), np.array([0] * 300), categorical=True) > 1.0


def test_unshifted_window_is_ok_and_shifted_window_drifts() -> None:
    rng = np.random.default_rng(2)
    ref_features, ref_labels = _population(rng, 2000)
    reference = Sample(ref_features, [f"pixels[{i}]" for i in range(FEATURES)], ref_labels, np.empty(0))
    same = _records(*_population(rng, 500), start=0)
    shifted_inputs = _records(*_population(rng, 500, shift=3.0), start=1000)
    features, labels = _population(rng, 500)
    shifted_predictions = _records(features, np.minimum(labels, 2), start=2000)

    report = drift_report(
        same + shifted_inputs + shifted_predictions, reference=reference, window_records=500
    )

    unshifted, inputs, predictions = report.windows
    assert unshifted.verdict == "ok" and not unshifted.flagged_features("warn")
    assert inputs.verdict == "drift" and len(inputs.flagged_features("drift")) >= FEATURES - 1
    assert inputs.prediction is not None and inputs.prediction.severity == "ok"
    assert predictions.prediction is not None and predictions.prediction.severity == "drift"
    assert not predictions.flagged_features("drift")
    assert report.verdict == "drift"


def test_first_window_reference_includes_confidence() -> None:
    rng = np.random.default_rng(3)
    baseline = _records(*_population(rng, 300), start=0, confidence=0.9)
    later_same = _records(*_population(rng, 300), start=300, confidence=0.9)
    unsure = _records(*_population(rng, 300), start=600, confidence=0.4)
    for record, value in zip(unsure, rng.uniform(0.3, 0.6, 300), strict=True):
        record.max_probability = [float(value)]
    for record, value in zip(baseline + later_same, rng.uniform(0.8, 1.0, 600), strict=True):
        record.max_probability = [float(value)]

    report = drift_report(baseline + later_same + unsure, window_records=300)

    assert report.reference == "first window" and len(report.windows) == 2
    assert report.windows[0].verdict == "ok"
    confidence = report.windows[1].confidence
    assert confidence is not None and confidence.severity == "drift"


def test_small_windows_are_insufficient_not_alarming() -> None:
    rng = np.random.default_rng(4)
    features, labels = _population(rng, 200)
    reference = Sample(features, [f"pixels[{i}]" for i in range(FEATURES)], labels, np.empty(0))
    tiny = Sample.from_records(_records(*_population(rng, 10, shift=5), start=0))
    window = compare_window(reference, tiny, DriftThresholds(min_rows=50), start=0, end=1, interactions=10)
    assert window.verdict == "insufficient"


def test_windows_by_time_and_by_count() -> None:
    records = [
        InteractionRecord(at=at, request_id=str(at), model="m", version="1") for at in (5, 61, 62, 130, 1)
    ]
    assert [[r.at for r in w] for w in split_windows(records, window_s=60)] == [[1, 5], [61, 62], [130]]
    assert [len(w) for w in split_windows(records, window_records=2)] == [2, 2, 1]


@pytest.mark.skipif(not DIGITS_NPZ.exists(), reason="data/digits_test.npz is written by the training step")
def test_digits_held_out_set_as_reference(tmp_path: Path) -> None:
    reference = Sample.from_npz(DIGITS_NPZ, features_key="pixels", labels_key="labels")
    assert reference.features is not None and reference.features.shape[1] == 64
    rng = np.random.default_rng(5)
    rows = rng.integers(0, reference.rows, 400)
    same = _records(reference.features[rows], reference.predictions[rows], start=0)
    inverted = _records(16 - reference.features[rows], reference.predictions[rows], start=1000)
    report = drift_report(same + inverted, reference=reference, window_records=400)
    assert [w.verdict for w in report.windows] == ["ok", "drift"]
    out = plot_drift(report, tmp_path / "drift.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
