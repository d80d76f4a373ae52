"""Regenerating the models reproduces the committed files; the held-out set is what they scored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qscore.inference.testset import DIGITS_TEST_SET, load_digits_test_set
from qscore_tools.training import digits
from qscore_tools.training.bench_mlp import TIED_DEPTH, build_bench_mlp

REPO = digits.ROOT / "triton_repo"
ARTEFACTS = ["digits/1/model.onnx", "digits/2/model.onnx", "bench_mlp/1/model.onnx"]


def run_onnx(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, label = session.run(["probabilities", "label"], {"pixels": pixels})
    return probabilities, label


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regen")
    digits.generate(out / "triton_repo", out / "data")
    return out


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_regenerated_models_match_committed(regenerated: Path, artefact: str) -> None:
    committed = (REPO / artefact).read_bytes()
    fresh = (regenerated / "triton_repo" / artefact).read_bytes()
    if fresh == committed:
        return
    # Documented tolerance (qscore_tools/training/digits.py): other library versions may round
    # differently; probabilities within 1e-4 and identical labels on the held-out set.
    pixels = load_digits_test_set().pixels
    fresh_p, fresh_l = run_onnx(regenerated / "triton_repo" / artefact, pixels)
    committed_p, committed_l = run_onnx(REPO / artefact, pixels)
    np.testing.assert_allclose(fresh_p, committed_p, atol=1e-4)
    np.testing.assert_array_equal(fresh_l, committed_l)


def test_regenerated_test_set_is_byte_identical(regenerated: Path) -> None:
    assert (regenerated / "data" / "digits_test.npz").read_bytes() == DIGITS_TEST_SET.read_bytes()


@pytest.mark.parametrize(("version", "floor"), [("1", 0.93), ("2", 0.95)])
def test_held_out_accuracy(version: str, floor: float) -> None:
    test_set = load_digits_test_set()
    probabilities, label = run_onnx(REPO / "digits" / version / "model.onnx", test_set.pixels)
    assert probabilities.shape == (len(test_set), 10) and probabilities.dtype == np.float32
    assert label.shape == (len(test_set), 1) and label.dtype == np.int64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.mean(label[:, 0] == test_set.labels)) >= floor


def test_test_set_is_held_out_and_balanced() -> None:
    test_set = load_digits_test_set()
    assert test_set.pixels.shape == (450, 64) and test_set.pixels.dtype == np.float32
    assert sorted(set(test_set.labels.tolist())) == list(range(10))
    assert test_set.pixels.min() >= 0.0 and test_set.pixels.max() <= 16.0


def test_bench_model_is_deterministic_and_wide() -> None:
    first = build_bench_mlp(seed=0).SerializeToString()
    assert first == build_bench_mlp(seed=0).SerializeToString()
    assert first != build_bench_mlp(seed=1).SerializeToString()
    assert "BENCHMARK MODEL" in build_bench_mlp(seed=0).graph.doc_string


def test_bench_model_is_deep_but_small_and_numerically_sane() -> None:
    # Deep for compute, but every hidden block reads one shared initializer, so the file stays small.
    path = REPO / "bench_mlp" / "1" / "model.onnx"
    assert path.stat().st_size < 10_000_000
    model = onnx.load(str(path))
    tied_readers = [node for node in model.graph.node if "w_tied" in node.input]
    assert len(tied_readers) == TIED_DEPTH >= 32
    probabilities, label = run_onnx(path, load_digits_test_set().pixels)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert float(probabilities.std(axis=0).max()) > 1e-3  # not constant across inputs
    assert label.shape == (450, 1) and label.dtype == np.int64


def test_missing_test_set_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"qscore_tools\.training\.digits"):
        load_digits_test_set(tmp_path / "nope.npz")


def test_training_registers_what_it_trained(regenerated: Path, mlflow_store: str) -> None:
    from qscore.registry.catalog import ModelCatalog
    from qscore_tools.training.register import data_fingerprint, register_trained

    split = digits.load_split()
    fingerprint = data_fingerprint(split.train_pixels, split.train_labels)
    assert fingerprint == data_fingerprint(digits.load_split().train_pixels, split.train_labels)
    catalog = ModelCatalog(mlflow_store)
    scores = {"digits/1": 0.96, "digits/2": 0.97}
    registered = register_trained(catalog, regenerated / "triton_repo", scores, fingerprint=fingerprint)
    assert registered == {"digits/1": "1", "digits/2": "2", "bench_mlp/1": "1"}
    v2 = catalog.state("digits").version("2")
    assert v2.metrics == {"accuracy": 0.97} and v2.data_fingerprint == fingerprint
    fresh = (regenerated / "triton_repo" / "digits" / "2" / "model.onnx").read_bytes()
    assert v2.sha256["model.onnx"] == hashlib.sha256(fresh).hexdigest()
    assert catalog.models() == ["bench_mlp", "digits"]
