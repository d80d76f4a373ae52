"""Turn one chunk of columns into model input arrays; rows that cannot be scored are set aside.

A row is unscoreable when a list has the wrong length or is null (`wrong_length`), or holds
NaN, null or infinity where the model forbids them (`non_finite`). The rest of the chunk is
scored; the rejected rows go to the side file with their id and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qscore.batch.chunks import Chunk
from qscore.batch.mapping import ColumnMapping, InputBinding
from qscore.contracts.model_spec import numpy_dtype

WRONG_LENGTH = "wrong_length"
NON_FINITE = "non_finite"


@dataclass(frozen=True)
class PreparedChunk:
    index: int
    ids: pa.Array  # ids of the rows to score, in order
    inputs: dict[str, np.ndarray]  # model input name -> [rows, *dims]
    rejected: pa.Table  # id, reason

    @property
    def rows(self) -> int:
        return len(self.ids)


def prepare_chunk(chunk: Chunk, mapping: ColumnMapping, *, allow_non_finite: bool) -> PreparedChunk:
    batch = chunk.batch
    ids = _ids(chunk, mapping)
    reasons = np.full(batch.num_rows, "", dtype=object)
    values: dict[str, np.ndarray] = {}
    for binding in mapping.bindings:
        array, bad_length = _input_values(batch, binding)
        if bad_length.any():
            _note(reasons, bad_length, f"{WRONG_LENGTH}: {binding.spec.name} wants {binding.width} values")
        if array.dtype.kind == "f" and not allow_non_finite:
            not_finite = ~np.isfinite(array).all(axis=1)
            if not_finite.any():
                reason = f"{NON_FINITE}: NaN, null or infinity in {binding.spec.name}"
                _note(reasons, not_finite & ~bad_length, reason)
        values[binding.spec.name] = array
    good = reasons == ""
    if good.all():  # the common case: no copies
        inputs = {b.spec.name: _shaped(values[b.spec.name], b) for b in mapping.bindings}
        empty = pa.table({mapping.id_name: ids.slice(0, 0), "reason": pa.array([], pa.string())})
        return PreparedChunk(chunk.index, ids, inputs, empty)
    inputs = {b.spec.name: _shaped(values[b.spec.name][good], b) for b in mapping.bindings}
    mask = pa.array(good)
    rejected = pa.table(
        {mapping.id_name: ids.filter(pc.invert(mask)), "reason": pa.array(reasons[~good], pa.string())}
    )
    return PreparedChunk(chunk.index, ids.filter(mask), inputs, rejected)


def _ids(chunk: Chunk, mapping: ColumnMapping) -> pa.Array:
    if mapping.id_column is None:
        return pa.array(np.arange(chunk.first_row, chunk.first_row + chunk.rows, dtype=np.int64))
    return chunk.batch.column(mapping.id_column)


def _note(reasons: np.ndarray, where: np.ndarray, reason: str) -> None:
    reasons[where & (reasons == "")] = reason


def _input_values(batch: pa.RecordBatch, binding: InputBinding) -> tuple[np.ndarray, np.ndarray]:
    """[rows, width] values in the model's dtype (NaN for nulls where it is a float type) and a
    mask of the rows whose list has the wrong length or is null."""
    width = binding.width
    rows = batch.num_rows
    dtype = numpy_dtype(binding.spec.datatype)
    if not binding.is_list:
        columns = [_numbers(batch.column(name), dtype) for name in binding.columns]
        return np.column_stack(columns), np.zeros(rows, dtype=bool)
    column = batch.column(binding.columns[0])
    if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
        # Fast path (Parquet/NumPy inputs): one flat buffer, no per-row lengths to check.
        return _numbers(column.flatten(), dtype).reshape(rows, width), np.zeros(rows, dtype=bool)
    lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy(zero_copy_only=False)
    bad_length = np.asarray(lengths != width)
    values = np.zeros((rows, width), dtype=dtype)
    good = column.filter(pa.array(~bad_length))
    if len(good):
        values[~bad_length] = _numbers(pc.list_flatten(good), dtype).reshape(-1, width)
    return values, bad_length


def _numbers(array: pa.Array, dtype: np.dtype[Any]) -> np.ndarray:
    if array.null_count:
        array = pc.fill_null(pc.cast(array, pa.float64()), float("nan"))
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        # No nulls: a view of Arrow's buffer. Also keeps pyarrow from importing pandas (when
        # installed) on the first chunk, which stalls every thread preparing one meanwhile.
        values = array.to_numpy(zero_copy_only=True)
    else:
        values = np.asarray(array.to_numpy(zero_copy_only=False))
    return values.astype(dtype, copy=False)


def _shaped(values: np.ndarray, binding: InputBinding) -> np.ndarray:
    return np.ascontiguousarray(values.reshape(len(values), *binding.spec.dims))
