"""Does the torch interpretation of a `model.onnx` compute what onnxruntime on CPU computes?

Tolerance (the project's, from docs/triton.md): probabilities within 1e-4, labels identical.
A label may differ only where the reference's two best probabilities are within that same
tolerance of each other (a tie the rounding of another device can flip), and such rows are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROBABILITY_TOLERANCE = 1e-4
OUTPUTS = ("probabilities", "label")


@dataclass(frozen=True)
class Equivalence:
    onnx_file: str
    device: str
    rows: int
    max_abs_probability_diff: float
    label_mismatches: int  # rows whose labels differ and are not near-ties
    near_tie_flips: int

    @property
    def passed(self) -> bool:
        return self.max_abs_probability_diff <= PROBABILITY_TOLERANCE and self.label_mismatches == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "tolerance": PROBABILITY_TOLERANCE}


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray]) -> tuple[float, int, int]:
    """(max |probability diff|, label mismatches that are not near-ties, near-tie flips)."""
    ref_probs, ref_labels = reference
    got_probs, got_labels = candidate
    if ref_probs.shape != got_probs.shape or ref_labels.shape != got_labels.shape:
        raise ValueError(
            f"shapes differ: {ref_probs.shape}/{ref_labels.shape} vs {got_probs.shape}/{got_labels.shape}"
        )
    diff = float(np.max(np.abs(ref_probs.astype(np.float64) - got_probs.astype(np.float64)), initial=0.0))
    if not np.all(np.isfinite(got_probs)):
        diff = float("inf")
    flipped = (ref_labels != got_labels).reshape(-1)
    top_two = np.sort(ref_probs, axis=1)[:, -2:]
    near_tie = (top_two[:, 1] - top_two[:, 0]) <= PROBABILITY_TOLERANCE
    return diff, int(np.sum(flipped & ~near_tie)), int(np.sum(flipped & near_tie))


def check_model(onnx_file: Path, pixels: np.ndarray, device: str) -> Equivalence:
    """Run `pixels` through onnxruntime (CPU) and the interpreted graph on `device` (a torch
    device, or "numpy" for the interpreter's numpy ops: no torch needed); compare."""
    import onnxruntime as ort

    from qscore_tools.bench.gpu.onnx_torch import load_graph

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    reference = session.run(list(OUTPUTS), {"pixels": pixels})
    candidate = load_graph(str(onnx_file), device).run({"pixels": pixels}, OUTPUTS)
    diff, mismatches, ties = compare_outputs(reference, candidate)
    return Equivalence(str(onnx_file), device, len(pixels), diff, mismatches, ties)


def check_repository(repo: Path, pixels: np.ndarray, device: str, models: Sequence[str]) -> list[Equivalence]:
    """Every version of `models` in `repo` (the GPU run's: digits v1 and v2, bench_mlp v1). The
    repository's other models (the digit_images ensemble and its parts) take other inputs."""
    from qscore_local.triton.repository import ONNX_FILENAME, list_models, version_dirs

    return [
        check_model(version / ONNX_FILENAME, pixels, device)
        for model in list_models(repo)
        if model in models
        for version in version_dirs(repo / model)
    ]
