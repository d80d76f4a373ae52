"""The held-out digits test set (data/digits_test.npz) that the smoke, demo and benchmarks score.

Written by `python -m qscore_tools.training.digits`; reading it needs only numpy, not scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGITS_TEST_SET = Path(__file__).resolve().parents[2] / "data" / "digits_test.npz"


@dataclass(frozen=True)
class DigitsTestSet:
    pixels: np.ndarray  # float32 [N, 64], values 0..16 as scikit-learn gives them
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_test_set(path: Path = DIGITS_TEST_SET) -> DigitsTestSet:
    """Load the held-out set; FileNotFoundError names the command that writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (run python -m qscore_tools.training.digits)")
    with np.load(path, allow_pickle=False) as archive:
        return DigitsTestSet(
            pixels=archive["pixels"].astype(np.float32), labels=archive["labels"].astype(np.int64)
        )
