"""A batch job's options and its plan: the mapping, the chunking and the manifest header.

Everything here is decided before any row is scored, so `--dry-run` can show it and a bad
input fails with one line instead of half an output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from qscore.batch.formats import Format, output_format, read_schema
from qscore.batch.mapping import ColumnMapping, map_columns
from qscore.batch.shards import Shard
from qscore.contracts.model_spec import ModelSpec

DEFAULT_DIRECT_CHUNK_ROWS = 4096
COUNT_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, kw_only=True)
class BatchJob:
    """What `qscore batch score` was asked to do (paths may be Blob URLs)."""

    input: str
    output: str
    model: str
    version: str | None = None  # a number or label pins it; None = production, as at runtime
    engine: str = "direct"
    chunk_rows: int | None = None  # None: the engine's default
    in_flight: int = 4  # chunks being scored at once
    input_format: Format | None = None
    output_format: Format | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None
    outputs: list[str] | None = None
    shard: Shard | None = None  # None: the whole input


@dataclass(frozen=True)
class JobPlan:
    job: BatchJob
    input_format: Format
    output_format: Format
    mapping: ColumnMapping
    chunk_rows: int
    total_rows: int | None  # of the whole input; None when it cannot be known without reading everything

    @property
    def chunks(self) -> int | None:
        """Chunks in the whole input."""
        return None if self.total_rows is None else -(-self.total_rows // self.chunk_rows)

    @property
    def shard(self) -> Shard | None:
        return self.job.shard

    @property
    def output(self) -> str:
        """Where this run writes: the job's output, or its shard's own file."""
        return self.job.output if self.shard is None else self.shard.output(self.job.output)

    @property
    def chunk_range(self) -> range | None:
        """The chunks this run scores; None: all of them (however many the input holds)."""
        if self.shard is None or self.chunks is None:
            return None
        return self.shard.chunk_range(self.chunks)

    @property
    def rows(self) -> int | None:
        """Rows this run scores (the shard's, when sharded)."""
        chunks = self.chunk_range
        if chunks is None or self.total_rows is None:
            return self.total_rows
        return max(0, min(chunks.stop * self.chunk_rows, self.total_rows) - chunks.start * self.chunk_rows)

    def header(self, fingerprint: str) -> dict[str, Any]:
        sharded: dict[str, Any] = {}
        if self.shard is not None and self.chunk_range is not None:
            sharded = {
                "shard": self.shard.label,
                "chunk_range": [self.chunk_range.start, self.chunk_range.stop],
            }
        return {
            **sharded,
            "version": 1,
            "input": self.job.input,
            "input_fingerprint": fingerprint,
            "model": self.job.model,
            "requested_version": self.job.version,
            "engine": self.job.engine,
            "chunk_rows": self.chunk_rows,
            "mapping": self.mapping.as_dict(),
            "output_format": self.output_format.value,
        }

    def describe(self) -> list[str]:
        total = "unknown" if self.total_rows is None else f"{self.total_rows:,}"
        chunks = "?" if self.chunks is None else f"{self.chunks:,}"
        lines = [f"input   {self.job.input} ({self.input_format.value}, {total} rows)"]
        lines += [f"map     {binding.describe()}" for binding in self.mapping.bindings]
        lines.append(f"id      {self.mapping.id_name}" + ("" if self.mapping.id_column else " (row number)"))
        lines.append(f"outputs {', '.join(o.name for o in self.mapping.outputs)}, model_version")
        lines.append(f"chunks  {chunks} of {self.chunk_rows:,} rows, engine {self.job.engine}")
        if self.shard is not None and self.chunk_range is not None:
            span = self.chunk_range
            lines.append(
                f"shard   {self.shard.label}: chunks {span.start:,} to {span.stop - 1:,} ({self.rows:,} rows)"
            )
        lines.append(f"output  {self.output} ({self.output_format.value})")
        return lines


def plan_job(job: BatchJob, local_input: Path, input_format: Format, spec: ModelSpec) -> JobPlan:
    """The plan for `job` reading `local_input`; MappingError/InputError before any scoring."""
    schema = read_schema(local_input, input_format)
    mapping = map_columns(spec, schema, overrides=job.overrides, id_column=job.id_column, outputs=job.outputs)
    chunk_rows = job.chunk_rows or default_chunk_rows(job.engine, spec)
    if job.engine == "queue" and 0 < spec.max_batch_size < chunk_rows:
        raise ValueError(
            f"--chunk-rows {chunk_rows}: a queue request holds at most the model's "
            f"max_batch_size ({spec.max_batch_size}) rows"
        )
    return JobPlan(
        job,
        input_format,
        job.output_format or output_format(input_format),
        mapping,
        chunk_rows,
        count_rows(local_input, input_format),
    )


def default_chunk_rows(engine: str, spec: ModelSpec) -> int:
    """Queue: one request a chunk, as large as the worker accepts (max_batch_size), so the
    fewest messages carry the data. Direct: several requests of max_batch_size a chunk, so a
    chunk is a fair unit of work (manifest lines, part files) and Triton sees full batches."""
    if engine == "queue":
        return spec.max_batch_size if spec.max_batch_size > 0 else 256
    return DEFAULT_DIRECT_CHUNK_ROWS


def count_rows(path: Path, fmt: Format) -> int | None:
    """Rows in the input: from metadata where the format has it, else by counting lines."""
    if fmt is Format.PARQUET:
        return int(pq.ParquetFile(path).metadata.num_rows)
    if fmt in (Format.CSV, Format.JSONL):
        lines = _count_lines(path)
        return max(lines - 1, 0) if fmt is Format.CSV else lines
    if fmt is Format.NPY:
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    with np.load(path, allow_pickle=False) as archive:
        return int(archive[archive.files[0]].shape[0]) if archive.files else 0


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while block := handle.read(COUNT_BLOCK_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (0 if last == b"\n" else 1)


def file_fingerprint(path: Path) -> str:
    """Size and modification time: enough to notice the input changed between runs."""
    stat = os.stat(path)
    return f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}"
