"""One logged interaction (a scored request) and how it is read back.

A line of the interaction log is the JSON of `InteractionRecord`. Small inputs are kept whole
(`inputs`, rows of floats) so drift can be computed per feature; larger ones keep only
summary statistics (`input_stats`). Predictions are the model's `label` output per row and
`max_probability` its top class probability, the usual confidence signal.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Up to this many input values per request are logged verbatim (a digits row is 64).
MAX_LOGGED_INPUT_VALUES = 4096
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"

Route = Literal["production", "canary", "shadow", "pinned"]
ALL_ROUTES: tuple[str, ...] = ("production", "canary", "shadow", "pinned")
SERVED_ROUTES: tuple[str, ...] = ("production", "canary", "pinned")


class InputStats(BaseModel):
    count: int
    mean: float
    std: float
    min: float
    max: float


class InteractionRecord(BaseModel):
    """A scored request as the interaction log keeps it."""

    model_config = ConfigDict(protected_namespaces=())

    at: float = Field(description="Epoch seconds when the reply was built")
    request_id: str
    model: str
    version: str
    route: Route = "production"
    status: str = "ok"
    inputs: dict[str, list[list[float]]] = Field(default_factory=dict)
    input_stats: dict[str, InputStats] = Field(default_factory=dict)
    prediction: list[int | float] = Field(default_factory=list)
    max_probability: list[float] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    scored_by: str | None = None


def _stats(array: np.ndarray) -> InputStats:
    values = np.asarray(array, dtype=np.float64)
    if values.size == 0:
        return InputStats(count=0, mean=0.0, std=0.0, min=0.0, max=0.0)
    return InputStats(
        count=int(values.size),
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
    )


def summarize_inputs(
    arrays: Mapping[str, np.ndarray], *, max_values: int = MAX_LOGGED_INPUT_VALUES
) -> tuple[dict[str, list[list[float]]], dict[str, InputStats]]:
    """Inputs as logged: rows kept whole when small, summary statistics always."""
    kept: dict[str, list[list[float]]] = {}
    stats: dict[str, InputStats] = {}
    for name, array in arrays.items():
        stats[name] = _stats(array)
        if array.size <= max_values and array.dtype.kind in "biuf":
            rows = np.asarray(array, dtype=np.float64).reshape(array.shape[0] if array.ndim else 1, -1)
            kept[name] = rows.tolist()
    return kept, stats


def summarize_outputs(outputs: Mapping[str, np.ndarray]) -> tuple[list[int | float], list[float]]:
    """(prediction per row, max probability per row) from a classifier's outputs."""
    prediction: list[int | float] = []
    confidence: list[float] = []
    if LABEL_OUTPUT in outputs:
        prediction = np.asarray(outputs[LABEL_OUTPUT]).reshape(-1).tolist()
    if PROBABILITIES_OUTPUT in outputs:
        probabilities = np.asarray(outputs[PROBABILITIES_OUTPUT], dtype=np.float64)
        rows = probabilities.reshape(probabilities.shape[0], -1) if probabilities.ndim else probabilities
        confidence = rows.max(axis=-1).reshape(-1).tolist()
        if not prediction:
            prediction = rows.argmax(axis=-1).reshape(-1).tolist()
    return prediction, confidence


def log_files(path: Path) -> list[Path]:
    """The log and its rotated parts, oldest first (path.N ... path.1, path)."""
    rotated = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    ordered = [candidate for _, candidate in sorted(rotated, reverse=True)]
    return [*ordered, path] if path.exists() else ordered


def iter_records(path: Path) -> Iterator[InteractionRecord]:
    """Every record of the log (rotated parts included), oldest first; torn lines are skipped.

    A line can be torn when a process died mid-write; losing one interaction is better than
    refusing to read the rest.
    """
    for file in log_files(path):
        with file.open("r", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    yield InteractionRecord.model_validate(json.loads(line))
                except ValueError:
                    continue


def select_records(
    records: Iterator[InteractionRecord] | list[InteractionRecord],
    *,
    model: str | None = None,
    version: str | None = None,
    routes: Collection[str] = SERVED_ROUTES,
) -> list[InteractionRecord]:
    """Scored records of one model (and version) on the given routes. The default leaves out
    shadow scores: they were never served and would double-count the traffic they copy."""
    return [
        record
        for record in records
        if (model is None or record.model == model)
        and (version is None or record.version == version)
        and record.route in routes
        and record.status == "ok"
    ]
