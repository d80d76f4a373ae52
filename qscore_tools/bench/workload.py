"""The inputs every load generator sends: rows of the held-out digits set (no download needed).

`bench_mlp` takes the same 64-pixel input, so one data set feeds both benchmark models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DIGITS_NPZ = ROOT / "data" / "digits_test.npz"
INPUT_NAME = "pixels"


def load_pixels(path: Path = DIGITS_NPZ) -> np.ndarray:
    """The held-out digits pixels, float32 [N, 64]; a clear error if the file is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (run python -m qscore_tools.training.digits)")
    with np.load(path) as data:
        return np.ascontiguousarray(data["pixels"], dtype=np.float32)


def batches(pixels: np.ndarray, batch_size: int, count: int = 32) -> list[np.ndarray]:
    """`count` batches of `batch_size` consecutive rows, wrapping around the data set."""
    rows = pixels.shape[0]
    out = []
    for index in range(count):
        picks = [(index * batch_size + offset) % rows for offset in range(batch_size)]
        out.append(pixels[picks])
    return out


@dataclass(frozen=True)
class ChildResult:
    """How a load-generator child process hands its sample back: one JSON file."""

    path: Path

    def write(self, payload: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(self.path)

    def read(self) -> dict[str, Any]:
        return dict(json.loads(self.path.read_text()))
