"""Cut a stream of record batches into chunks of exactly `rows` rows (the last may be shorter).

Chunk k always holds rows [k*rows, (k+1)*rows) whatever batch sizes the reader produced, so
a rerun numbers the chunks the same way and the manifest can say which are done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Chunk:
    index: int
    first_row: int  # row number (0-based) of the chunk's first row in the input
    batch: pa.RecordBatch

    @property
    def rows(self) -> int:
        return self.batch.num_rows


def rechunk(batches: Iterable[pa.RecordBatch], rows: int, *, first_index: int = 0) -> Iterator[Chunk]:
    """`batches` start at chunk `first_index` (a shard's first chunk): its rows are numbered from
    first_index * rows."""
    if rows < 1:
        raise ValueError("chunk rows must be >= 1")
    pending: list[pa.RecordBatch] = []
    held = 0
    index = first_index
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            head = table.slice(0, rows).combine_chunks().to_batches()
            yield Chunk(index, index * rows, _one_batch(head, table.schema))
            index += 1
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            held -= rows
    if held:
        table = pa.Table.from_batches(pending)
        yield Chunk(index, index * rows, _one_batch(table.combine_chunks().to_batches(), table.schema))


def _one_batch(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches, schema=schema).combine_chunks().to_batches()[0]
