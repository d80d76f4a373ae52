"""One logged interaction (a scored request) and how it is read back.

A line of the interaction log is the JSON of `InteractionRecord`. Small inputs are kept whole
(`inputs`, rows of floats) so drift can be computed per feature; larger ones keep only
summary statistics (`input_stats`). `prediction` is the model's predicted-class output per row
and `max_probability` its top class probability, the usual confidence signal. Which output is
the class is the model's to say (the `qscore.predicted_class_output` parameter of its
config.pbtxt, passed as `class_output`); without it, the class output is the integer output with
one value per row, and the probabilities the float output whose rows sum to 1.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from qscore.scoring.outcomes import RequestOutcome

# Up to this many input values per request are logged verbatim (a digits row is 64).
MAX_LOGGED_INPUT_VALUES = 4096
# Rows of a probability output sum to 1 within this (float32 softmax rounding).
PROBABILITY_SUM_TOLERANCE = 1e-3
# Outputs up to this many values are summarized in Python rather than numpy (same figures).
SMALL_OUTPUT_VALUES = 256

Route = Literal["production", "canary", "shadow", "pinned"]
Outcome = Literal["ok", "error", "dead_lettered"]
UNKNOWN_MODEL = "unknown"
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
    status: str = Field(default="ok", description="ok, or the error code the request ended with")
    outcome: Outcome = Field(default="ok", description="ok, error (an error reply) or dead_lettered")
    inputs: dict[str, list[list[float]]] = Field(default_factory=dict)
    input_stats: dict[str, InputStats] = Field(default_factory=dict)
    prediction: list[int | float] = Field(default_factory=list)
    max_probability: list[float] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    scored_by: str | None = None


def record_from_outcome(outcome: RequestOutcome) -> InteractionRecord:
    """The log record of a request that ended in an error reply or a dead-letter record. What
    the runtime did not know is read from the request's body when it is JSON; a version is kept
    only when the request named one (`version` ""), so `qscore model compare` counts a request
    that named none against the production version it was headed for."""
    model, version, route = outcome.model, outcome.version, outcome.route
    if outcome.body is not None and (model is None or version is None):
        named_model, named_version = _named_in(outcome.body)
        model = model or named_model
        if version is None and named_version is not None:
            version = named_version
            route = route or "pinned"
    return InteractionRecord(
        at=outcome.at,
        request_id=outcome.request_id,
        model=model or UNKNOWN_MODEL,
        version=version if version is not None and version.isdigit() else "",
        route=route or "production",
        status=outcome.code,
        outcome=outcome.kind,
        scored_by=outcome.scored_by,
    )


def _named_in(body: bytes) -> tuple[str | None, str | None]:
    """(model, version) a request body names, where it is a JSON object that names them."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    model, version = document.get("model"), document.get("version")
    return (
        model if isinstance(model, str) and model else None,
        version if isinstance(version, str) and version.isdigit() else None,
    )


def _stats(array: np.ndarray) -> InputStats:
    if array.dtype.kind == "O":  # BYTES (encoded images, documents): statistics of their lengths
        array = np.array([len(element) for element in array.ravel()], dtype=np.float64)
    values = np.asarray(array, dtype=np.float64)
    if values.size == 0:
        return InputStats.model_construct(count=0, mean=0.0, std=0.0, min=0.0, max=0.0)
    # values.mean() and values.std() computed as numpy does (same sums, same result) without its
    # per-call dispatch, which was most of the interaction log's cost per single-row request.
    size = values.size
    mean = np.add.reduce(values, axis=None) / size
    deviations = values - mean
    variance = np.add.reduce(np.multiply(deviations, deviations), axis=None) / size
    return InputStats.model_construct(  # typed by construction: no validation needed
        count=int(size),
        mean=float(mean),
        std=float(np.sqrt(variance)),
        min=float(np.minimum.reduce(values, axis=None)),
        max=float(np.maximum.reduce(values, axis=None)),
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


def _rows(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array)
    return values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)


def _is_class_output(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind in "iu" and _rows(array).shape[1] == 1


def _is_distribution(array: np.ndarray) -> bool:
    values = np.asarray(array)
    if values.dtype.kind != "f" or values.size == 0:
        return False
    rows = _rows(values)
    if rows.shape[1] < 2:
        return False
    if values.size <= SMALL_OUTPUT_VALUES:
        return all(_is_distribution_row(row) for row in rows.tolist())
    rows = rows.astype(np.float64)
    if rows.min() < 0.0 or rows.max() > 1.0:
        return False
    return bool(np.all(np.abs(rows.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE))


def _is_distribution_row(row: list[float]) -> bool:
    # NaN: min/max may skip it, but the sum is NaN and fails the tolerance, as in numpy's check.
    return min(row) >= 0.0 and max(row) <= 1.0 and abs(sum(row) - 1.0) <= PROBABILITY_SUM_TOLERANCE


def summarize_outputs(
    outputs: Mapping[str, np.ndarray], *, class_output: str | None = None
) -> tuple[list[int | float], list[float]]:
    """(prediction per row, max probability per row) from a model's outputs.

    `class_output` names the predicted-class output (from the model's config); without it the
    first integer output with one value per row is the class. Confidence comes from the first
    output that is a probability distribution per row; it is also the class (argmax) when no
    class output exists. A regression model gets its single output as the prediction.
    """
    named = outputs.get(class_output) if class_output else None
    chosen = named if named is not None else next((a for a in outputs.values() if _is_class_output(a)), None)
    distribution = next((a for a in outputs.values() if _is_distribution(a)), None)
    prediction: list[int | float] = _rows(chosen).reshape(-1).tolist() if chosen is not None else []
    confidence: list[float] = []
    if distribution is not None and distribution.size <= SMALL_OUTPUT_VALUES:
        # As numpy's max and argmax (the first of equal maxima) below, in Python: a few values
        # per row cost less than numpy's per-call dispatch (the interaction log's thread).
        listed = _rows(distribution).tolist()
        confidence = [max(row) for row in listed]
        if not prediction:
            prediction = [row.index(top) for row, top in zip(listed, confidence, strict=True)]
    elif distribution is not None:
        rows = _rows(distribution).astype(np.float64)
        confidence = rows.max(axis=1).tolist()
        if not prediction:
            prediction = rows.argmax(axis=1).tolist()
    if not prediction and len(outputs) == 1:
        only = _rows(next(iter(outputs.values())))
        if only.shape[1] == 1 and only.dtype.kind in "biuf":
            prediction = only.reshape(-1).tolist()
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
