"""Dataset formats a batch job reads and writes: Parquet, CSV, JSON Lines, NumPy (.npy/.npz).

Readers stream pyarrow record batches, so memory stays flat whatever the file size (one
exception: an .npz member cannot be memory-mapped, so its arrays are loaded whole). Writers
encode one part (a finished chunk) to a file; `assemble` joins the parts in order.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

READ_BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 1 << 20
JSONL_BLOCK_BYTES = 4 << 20
NPY_COLUMN = "values"  # the column a bare .npy array becomes


class InputError(ValueError):
    """A file that cannot be read as the dataset it claims to be (one line for a person)."""


class Format(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"
    NPY = "npy"
    NPZ = "npz"

    @property
    def suffix(self) -> str:
        return f".{self.value}"


_SUFFIXES = {
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
    ".csv": Format.CSV,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".json": Format.JSONL,
    ".npy": Format.NPY,
    ".npz": Format.NPZ,
}


def format_of(name: str) -> Format:
    """The format a file name's suffix says (InputError for an unknown one)."""
    suffix = Path(name.split("?", 1)[0]).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise InputError(f"cannot tell the format of {name!r} from its suffix (known: {known}; or --format)")
    return _SUFFIXES[suffix]


def output_format(fmt: Format) -> Format:
    """What a job writes for an input of `fmt`: the same, except one .npy array is not a table."""
    return Format.NPZ if fmt is Format.NPY else fmt


# --- reading ---------------------------------------------------------------------------


def read_schema(path: Path, fmt: Format) -> pa.Schema:
    """The input's columns and types, read without scoring (mapping errors come before any work)."""
    try:
        return _open_batches(path, fmt)[0]
    except InputError:
        raise
    except (OSError, pa.ArrowException, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable as {fmt.value}: {_first_line(exc)}") from None


def read_batches(path: Path, fmt: Format) -> Iterator[pa.RecordBatch]:
    """Record batches of the input, in order (InputError when the file turns out malformed)."""
    try:
        _, batches = _open_batches(path, fmt)
        yield from batches
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: not readable as {fmt.value}: {_first_line(exc)}") from None


def read_rows(path: Path, fmt: Format, start: int, stop: int) -> Iterator[pa.RecordBatch]:
    """Record batches of input rows [start, stop) (a shard's part). Parquet reads only the row
    groups that hold them; the other formats are read from the top and stop at `stop`."""
    if start >= stop:
        return
    if fmt is Format.PARQUET and path.is_file():
        batches, offset = _parquet_row_groups(path, start, stop)
    else:
        batches, offset = read_batches(path, fmt), 0
    for batch in batches:
        end = offset + batch.num_rows
        if end > start:
            yield batch.slice(max(start - offset, 0), min(end, stop) - max(start, offset))
        offset = end
        if offset >= stop:
            return


def _parquet_row_groups(path: Path, start: int, stop: int) -> tuple[Iterator[pa.RecordBatch], int]:
    """Batches of the row groups that overlap [start, stop), and the row number of the first."""
    parquet = pq.ParquetFile(path)
    groups: list[int] = []
    first_row = offset = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if offset + rows > start and offset < stop:
            if not groups:
                first_row = offset
            groups.append(group)
        offset += rows

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=groups)
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise InputError(f"{path}: not readable as parquet: {_first_line(exc)}") from None

    return batches(), first_row


def _open_batches(path: Path, fmt: Format) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if fmt is Format.PARQUET:
        parquet = pq.ParquetFile(path)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=READ_BATCH_ROWS)
    if fmt is Format.CSV:
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES))
        return reader.schema, iter(reader)
    if fmt is Format.JSONL:
        return _jsonl_batches(path)
    return _numpy_batches(path, fmt)


def _jsonl_batches(path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """JSON Lines in blocks of whole lines; every block is parsed with the first block's schema."""
    handle = path.open("rb")
    first = _line_block(handle)
    if not first.strip():
        handle.close()
        raise InputError(f"{path}: empty JSON Lines file")
    table = pa_json.read_json(io.BytesIO(first))
    options = pa_json.ParseOptions(explicit_schema=table.schema, unexpected_field_behavior="ignore")

    def batches() -> Iterator[pa.RecordBatch]:
        with handle:
            yield from table.to_batches()
            while block := _line_block(handle):
                yield from pa_json.read_json(io.BytesIO(block), parse_options=options).to_batches()

    return table.schema, batches()


def _line_block(handle: io.BufferedReader) -> bytes:
    block = handle.read(JSONL_BLOCK_BYTES)
    if block and not block.endswith(b"\n"):
        block += handle.readline()
    return block


def _numpy_batches(path: Path, fmt: Format) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if fmt is Format.NPY:
        arrays = {NPY_COLUMN: np.load(path, mmap_mode="r", allow_pickle=False)}
    else:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    lengths = {len(array) for array in arrays.values()}
    if len(lengths) != 1:
        raise InputError(f"{path}: arrays differ in length ({sorted(lengths)})")
    rows = lengths.pop()
    schema = _numpy_record_batch(arrays, 0, 0).schema

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, rows, READ_BATCH_ROWS):
            yield _numpy_record_batch(arrays, start, min(start + READ_BATCH_ROWS, rows))

    return schema, batches()


def _numpy_record_batch(arrays: dict[str, np.ndarray], start: int, end: int) -> pa.RecordBatch:
    columns = {name: numpy_column(np.asarray(array[start:end])) for name, array in arrays.items()}
    return pa.RecordBatch.from_pydict(columns)


def numpy_column(array: np.ndarray) -> pa.Array:
    """A 1-D array as a plain column, an [n, k...] array as a fixed-size list column of k... values."""
    if array.ndim == 1:
        return pa.array(array)
    width = int(np.prod(array.shape[1:]))
    flat = np.ascontiguousarray(array).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --- writing ---------------------------------------------------------------------------


PART_SUFFIX = ".arrow"


def write_part(table: pa.Table, path: Path) -> None:
    """Write one part as Arrow IPC (fsync'd: the manifest records it as done right after).

    Parts are an internal format: the cheapest to write and read back; the output format is
    encoded once, by `assemble`.
    """
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def read_part(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _plain_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """As column_numpy, with strings as fixed-width unicode: .npz files load without pickle."""
    values = column_numpy(column)
    return values.astype(str) if values.dtype == object else values


def _flat_lists(table: pa.Table) -> pa.Table:
    """CSV has no lists: a list column `p` becomes columns p_0 .. p_{k-1}."""
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_fixed_size_list(column.type):
            values = column_numpy(column)
            for index in range(values.shape[1]):
                columns[f"{name}_{index}"] = values[:, index]
        else:
            columns[name] = column
    return pa.table(columns)


def column_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy; a fixed-size list column as a 2-D array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False)).reshape(-1, width)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def assemble(parts: Sequence[Path], target: Path, fmt: Format) -> None:
    """Encode the parts, in order, into one `target` file of format `fmt` (streaming: one part
    in memory at a time, except for .npz)."""
    writer = OutputWriter(target, fmt)
    try:
        for part in parts:
            writer.write(read_part(part))
    except BaseException:
        writer.abort()
        raise
    writer.close()


class OutputWriter:
    """Encodes tables, in the order given, into one `target` file of format `fmt`: the output
    grows as chunks finish (an .npz cannot be appended to: its columns are joined at close)."""

    def __init__(self, target: Path, fmt: Format) -> None:
        self.target = target
        self.fmt = fmt
        self.rows = 0
        self._writer: Any = None
        self._npz: dict[str, list[np.ndarray]] = {}

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt is Format.NPZ or self.fmt is Format.NPY:
            for name in table.column_names:
                self._npz.setdefault(name, []).append(_plain_numpy(table.column(name)))
            return
        if self._writer is None:
            self._writer = _table_writer(self.target, self.fmt, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (an empty input still gets a valid, empty output)."""
        if self.fmt is Format.NPZ or self.fmt is Format.NPY:
            # The outputs are tens of bytes a row: held in memory until here.
            with self.target.open("wb") as handle:
                np.savez(handle, **{name: np.concatenate(arrays) for name, arrays in self._npz.items()})
            return
        if self._writer is None:
            self.target.write_bytes(b"")
            if self.fmt is Format.PARQUET:
                pq.write_table(pa.table({}), self.target)
            return
        self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _table_writer(target: Path, fmt: Format, schema: pa.Schema) -> Any:
    if fmt is Format.PARQUET:
        return pq.ParquetWriter(target, schema, use_dictionary=dictionary_columns(schema))
    if fmt is Format.CSV:
        return _CsvWriter(target)
    return _JsonLinesWriter(target)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Parquet dictionary encoding for every column but floating-point ones (and lists of them).

    Scores such as probabilities rarely repeat: their dictionary only grows until the writer
    gives up on it, which made encoding the output about 4x the CPU (and the file larger) than
    with plain encoding. Labels, versions and ids keep it. The values read back are the same."""
    names = []
    for column in schema:
        value_type = column.type
        while pa.types.is_list(value_type) or pa.types.is_fixed_size_list(value_type):
            value_type = value_type.value_type
        if not pa.types.is_floating(value_type):
            names.append(column.name)
    return names


class _CsvWriter:
    def __init__(self, target: Path) -> None:
        self._target = target
        self._writer: pa_csv.CSVWriter | None = None

    def write_table(self, table: pa.Table) -> None:
        flat = _flat_lists(table)
        if self._writer is None:
            self._writer = pa_csv.CSVWriter(str(self._target), flat.schema)
        self._writer.write_table(flat)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _JsonLinesWriter:
    def __init__(self, target: Path) -> None:
        self._handle = target.open("w")

    def write_table(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            self._handle.write(json.dumps(row, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._handle.close()
