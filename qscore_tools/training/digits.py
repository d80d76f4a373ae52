"""Train the digits classifiers and the benchmark MLP, export them to ONNX into `triton_repo/`.

Run as `python -m qscore_tools.training.digits [--repo triton_repo] [--data data]`. Everything uses
fixed seeds and a pinned ONNX opset, so regenerating on the same library versions gives
byte-identical files (tests/test_training.py checks it). Across scikit-learn/numpy/BLAS
versions the weights may differ by float rounding; the documented tolerance is that
probabilities agree within 1e-4 and labels agree exactly on the held-out set.

Outputs:
- triton_repo/digits/1/model.onnx   logistic regression
- triton_repo/digits/2/model.onnx   MLP (accuracy >= 0.95 on the held-out set)
- triton_repo/bench_mlp/1/model.onnx  BENCHMARK ONLY: deep weight-tied MLP with random fixed-seed weights
- data/digits_test.npz              the held-out test set (`pixels` float32 [N,64], `labels` int64 [N])

With `--register [--store URI]` the three models are then registered in the MLflow registry
(qscore_tools/training/register.py) with their accuracy, data fingerprint and git commit.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qscore_tools.training.bench_mlp import build_bench_mlp
from qscore_tools.training.onnx_names import INPUT_NAME, LABEL_NAME, PROBABILITIES_NAME, rename_digits_graph

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
TEST_FRACTION = 0.25
# Pinned so the export does not drift with the converter's default opset.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# A fixed timestamp inside the .npz (a zip) keeps the file byte-identical across runs.
ZIP_DATE = (2024, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class DigitsSplit:
    """The digits data set split into training and held-out parts (pixels as scikit-learn gives them)."""

    train_pixels: np.ndarray
    train_labels: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray


def load_split() -> DigitsSplit:
    """scikit-learn's bundled 8x8 digits (no download), stratified 75/25 split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.data.astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=TEST_FRACTION, random_state=SEED, stratify=labels
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


def train_logistic(split: DigitsSplit) -> Any:
    """Version 1: scaled multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=SEED))
    return model.fit(split.train_pixels, split.train_labels)


def train_mlp(split: DigitsSplit) -> Any:
    """Version 2: scaled MLP, one hidden layer of 128 units."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=SEED)
    model = make_pipeline(StandardScaler(), mlp)
    return model.fit(split.train_pixels, split.train_labels)


def export_classifier(model: Any) -> bytes:
    """ONNX bytes for a fitted classifier: `pixels` FP32 [N,64] -> `probabilities` [N,10], `label` [N,1]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1]
    onx = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, 64]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return rename_digits_graph(onx).SerializeToString()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but with fixed zip timestamps so the bytes do not depend on when it ran."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE), buffer.getvalue())


def write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def accuracy(model: Any, split: DigitsSplit) -> float:
    return float(np.mean(model.predict(split.test_pixels) == split.test_labels))


def generate(repo: Path, data_dir: Path, *, split: DigitsSplit | None = None) -> dict[str, float]:
    """Train, export and write every artefact; returns held-out accuracy per digits version."""
    split = split or load_split()
    logistic = train_logistic(split)
    mlp = train_mlp(split)
    write_bytes(repo / "digits" / "1" / "model.onnx", export_classifier(logistic))
    write_bytes(repo / "digits" / "2" / "model.onnx", export_classifier(mlp))
    write_bytes(repo / "bench_mlp" / "1" / "model.onnx", build_bench_mlp(seed=SEED).SerializeToString())
    write_npz(data_dir / "digits_test.npz", {"pixels": split.test_pixels, "labels": split.test_labels})
    return {"digits/1": accuracy(logistic, split), "digits/2": accuracy(mlp, split)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_repo", help="model repository to write")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="where the held-out set goes")
    parser.add_argument(
        "--register", action="store_true", help="also register the trained models in the MLflow registry"
    )
    parser.add_argument("--store", default=None, help="MLflow tracking/registry URI (default: .qscore/)")
    args = parser.parse_args(argv)
    split = load_split()
    scores = generate(args.repo, args.data, split=split)
    for model, score in scores.items():
        print(f"{model}: held-out accuracy {score:.4f}")
    print(f"outputs: {LABEL_NAME}, {PROBABILITIES_NAME}; wrote {args.repo} and {args.data}")
    if args.register:
        from qscore.registry.catalog import ModelCatalog
        from qscore_tools.training.register import data_fingerprint, register_trained

        fingerprint = data_fingerprint(split.train_pixels, split.train_labels)
        registered = register_trained(ModelCatalog(args.store), args.repo, scores, fingerprint=fingerprint)
        for trained, version in registered.items():
            print(f"{trained}: registered as version {version}")


if __name__ == "__main__":
    main()
