"""Digits datasets for the batch tests: the held-out rows repeated to any size, in any format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qscore.batch.formats import numpy_column
from qscore.inference.testset import load_digits_test_set


def digits_rows(rows: int) -> tuple[np.ndarray, np.ndarray]:
    test_set = load_digits_test_set()
    repeats = -(-rows // len(test_set))
    return np.tile(test_set.pixels, (repeats, 1))[:rows], np.tile(test_set.labels, repeats)[:rows]


def write_digits_parquet(path: Path, rows: int, *, row_group_rows: int = 65_536) -> np.ndarray:
    """`id` (0..rows-1), `pixels` (list of 64), `label`; returns the labels."""
    pixels, labels = digits_rows(rows)
    table = pa.table({"id": np.arange(rows), "pixels": numpy_column(pixels), "label": labels})
    pq.write_table(table, path, row_group_size=row_group_rows)
    return labels


def write_digits_csv(path: Path, rows: int) -> np.ndarray:
    """`key` (k0..), 64 columns `px_0`..`px_63`, `label`."""
    pixels, labels = digits_rows(rows)
    with path.open("w") as handle:
        handle.write("key," + ",".join(f"px_{i}" for i in range(64)) + ",label\n")
        for index, (row, label) in enumerate(zip(pixels, labels, strict=True)):
            handle.write(f"k{index}," + ",".join(f"{v:g}" for v in row) + f",{label}\n")
    return labels


def write_digits_jsonl(path: Path, rows: int) -> np.ndarray:
    pixels, labels = digits_rows(rows)
    with path.open("w") as handle:
        for index, (row, label) in enumerate(zip(pixels, labels, strict=True)):
            handle.write(json.dumps({"id": f"j{index}", "pixels": row.tolist(), "label": int(label)}) + "\n")
    return labels
