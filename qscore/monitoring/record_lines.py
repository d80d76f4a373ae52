"""The interaction log's lines of many scored requests at once, byte for byte the JSON of
`record_from_scored(...).model_dump_json()` for each, at a fraction of its cost per request.

Per request, a record cost two pydantic constructions, a dozen numpy calls on 1-row arrays and
their dispatch: most of the interaction log's thread (docs/operations.md). Here the requests
whose arrays have the same names, dtypes and shapes are summarized together: one numpy call per
statistic for the whole group, the same sums in the same order per request as `_stats` and
`summarize_outputs` (reductions along a contiguous row are the same loop as over the row alone;
the small-output check sums left to right as Python's `sum` does). The record is a dict in the
model's field order, serialized by pydantic's serializer (the model's: same floats, NaN as null).
A request that does not fit a group (no rows, 0-d or BYTES arrays, large outputs) is built the
per-request way, so what is logged never depends on which path built it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic_core import to_json

from qscore.contracts import ScoreReply
from qscore.monitoring.records import (
    MAX_LOGGED_INPUT_VALUES,
    PROBABILITY_SUM_TOLERANCE,
    SMALL_OUTPUT_VALUES,
    InteractionRecord,
    Route,
)
from qscore.scoring import ScoredItem

# (dtype, per-request shape) of each named array, in order: requests with one signature stack.
Signature = tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class ScoredEntry:
    """A scored request queued for the log: cheaper to queue than a closure, and batchable."""

    scored: ScoredItem
    reply: ScoreReply | None
    route: Route
    scored_by: str | None
    class_output: str | None


@dataclass(frozen=True, slots=True)
class BuiltLine:
    """A record's JSON line with what the Blob log partitions by."""

    model: str
    version: str
    at: float
    line: str


def _signature(arrays: Mapping[str, np.ndarray]) -> Signature | None:
    """None where the per-request way must build it: 0-d, empty, BYTES or boolean arrays."""
    parts = []
    for name, array in arrays.items():
        dtype = array.dtype
        if not array.ndim or not array.size or dtype.kind not in "iuf":
            return None
        parts.append((name, dtype, array.shape))
    return tuple(parts)


def _stacked(
    entries: Sequence[ScoredEntry], name: str, pick: Callable[[ScoredItem], Mapping[str, np.ndarray]]
) -> np.ndarray:
    """(requests, values per request) as float64, each request's values in its own order."""
    stack = np.stack([pick(entry.scored)[name] for entry in entries])
    return np.asarray(stack, dtype=np.float64).reshape(len(entries), -1)


def _input_parts(
    entries: Sequence[ScoredEntry], signature: Signature
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs kept, input_stats) per request, as `summarize_inputs` makes them."""
    kept: list[dict[str, Any]] = [{} for _ in entries]
    stats: list[dict[str, Any]] = [{} for _ in entries]
    for name, _, shape in signature:
        values = _stacked(entries, name, lambda scored: scored.item.arrays)
        size = values.shape[1]
        mean = np.add.reduce(values, axis=1) / size
        deviations = values - mean[:, None]
        std = np.sqrt(np.add.reduce(np.multiply(deviations, deviations), axis=1) / size)
        columns = zip(
            mean.tolist(),
            std.tolist(),
            np.minimum.reduce(values, axis=1).tolist(),
            np.maximum.reduce(values, axis=1).tolist(),
            strict=True,
        )
        for index, (mean_, std_, min_, max_) in enumerate(columns):
            stats[index][name] = {"count": size, "mean": mean_, "std": std_, "min": min_, "max": max_}
        if size <= MAX_LOGGED_INPUT_VALUES:
            for index, rows in enumerate(values.reshape(len(entries), shape[0], -1).tolist()):
                kept[index][name] = rows
    # summarize_inputs fills `inputs` in the arrays' order, skipping the large ones: same here.
    return kept, stats


def _distribution_rows(values: np.ndarray) -> np.ndarray:
    """Per request (rows, columns of float64): is every row a distribution, as `_is_distribution`
    decides for an output of at most SMALL_OUTPUT_VALUES values (Python's min, max, left-to-right sum)."""
    total = values[:, :, 0].copy()
    for column in range(1, values.shape[2]):
        total += values[:, :, column]
    with np.errstate(invalid="ignore"):
        ok = (
            (values.min(axis=2) >= 0.0)
            & (values.max(axis=2) <= 1.0)
            & (np.abs(total - 1.0) <= PROBABILITY_SUM_TOLERANCE)
        )
    return np.asarray(ok.all(axis=1))


def _output_parts(
    entries: Sequence[ScoredEntry], signature: Signature, class_output: str | None
) -> list[tuple[list[Any], list[float]]] | None:
    """(prediction, max_probability) per request as `summarize_outputs` makes them; None where an
    output is too large for its small-output way (the per-request way then builds it)."""
    if any(int(np.prod(shape)) > SMALL_OUTPUT_VALUES for _, _, shape in signature):
        return None
    count = len(entries)
    kinds = {name: dtype.kind for name, dtype, _ in signature}
    columns = {name: int(np.prod(shape[1:])) for name, _, shape in signature}
    names = [name for name, _, _ in signature]
    chosen = (
        class_output
        if class_output in kinds
        else next((name for name in names if kinds[name] in "iu" and columns[name] == 1), None)
    )
    candidates = [name for name in names if kinds[name] == "f" and columns[name] >= 2]
    # Per candidate and request: is it a distribution, each row's top value and its first index
    # (Python's max and list.index: a distribution row has no NaN, so numpy's are the same).
    tops: dict[str, list[list[float]]] = {}
    firsts: dict[str, list[list[int]]] = {}
    is_distribution: dict[str, list[bool]] = {}
    for name in candidates:
        rows = _stacked(entries, name, lambda scored: scored.outputs).reshape(count, -1, columns[name])
        is_distribution[name] = _distribution_rows(rows).tolist()
        tops[name] = rows.max(axis=2).tolist()
        firsts[name] = rows.argmax(axis=2).tolist()
    predictions: list[list[Any]] = [[] for _ in entries]
    if chosen is not None:
        predictions = (
            np.stack([entry.scored.outputs[chosen] for entry in entries]).reshape(count, -1).tolist()
        )
    elif len(names) == 1 and columns[names[0]] == 1:  # a regression model's single output
        only = np.stack([entry.scored.outputs[names[0]] for entry in entries]).reshape(count, -1)
        predictions = only.tolist()
    parts: list[tuple[list[Any], list[float]]] = []
    for index in range(count):
        prediction = predictions[index]
        distribution = next((name for name in candidates if is_distribution[name][index]), None)
        confidence: list[float] = []
        if distribution is not None:
            confidence = tops[distribution][index]
            if chosen is None:
                prediction = firsts[distribution][index]
        parts.append((prediction, confidence))
    return parts


def _line(
    entry: ScoredEntry,
    inputs: dict[str, Any],
    stats: dict[str, Any],
    prediction: list[Any],
    confidence: list[float],
) -> BuiltLine:
    scored, reply = entry.scored, entry.reply
    at = scored.batch_started_at + scored.inference_ms / 1000
    model, version = scored.item.request.model, scored.model_version
    record = {  # InteractionRecord's fields, in its order
        "at": at,
        "request_id": scored.item.request_id,
        "model": model,
        "version": version,
        "route": entry.route,
        "status": "ok",
        "outcome": "ok",
        "inputs": inputs,
        "input_stats": stats,
        "prediction": prediction,
        "max_probability": confidence,
        # the Timings model itself: to_json writes it as its model_dump() would be written
        "timings": reply.timings if reply is not None else {"inference_ms": float(scored.inference_ms)},
        "scored_by": entry.scored_by or (reply.scored_by if reply is not None else None),
    }
    return BuiltLine(model, version, at, to_json(record, inf_nan_mode="null").decode() + "\n")


def line_of_record(record: InteractionRecord) -> BuiltLine:
    return BuiltLine(record.model, record.version, record.at, record.model_dump_json() + "\n")


def scored_lines(
    entries: Sequence[ScoredEntry], single: Callable[[ScoredEntry], BuiltLine]
) -> list[BuiltLine | Exception]:
    """Each entry's line, in order; `single` builds one the per-request way (and what it raises,
    one bad request, is that request's item: it must not cost its batch-mates their lines)."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    built: list[BuiltLine | Exception | None] = [None] * len(entries)
    for index, entry in enumerate(entries):
        inputs, outputs = _signature(entry.scored.item.arrays), _signature(entry.scored.outputs)
        if inputs is None or outputs is None:
            continue
        groups[(inputs, outputs, entry.class_output)].append(index)
    for (inputs, outputs, class_output), members in groups.items():
        if len(members) < 2:
            continue
        group = [entries[index] for index in members]
        try:
            summaries = _output_parts(group, outputs, class_output)
            if summaries is None:
                continue
            kept, stats = _input_parts(group, inputs)
            for position, index in enumerate(members):
                built[index] = _line(entries[index], kept[position], stats[position], *summaries[position])
        except Exception:  # the per-request way below builds them, one by one
            for index in members:
                built[index] = None
    results: list[BuiltLine | Exception] = []
    for index, line in enumerate(built):
        if line is None:
            try:
                line = single(entries[index])
            except Exception as exc:
                line = exc
        results.append(line)
    return results
