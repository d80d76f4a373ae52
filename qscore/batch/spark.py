"""Score a Spark DataFrame through Triton (Databricks, or any Spark): `score_dataframe`.

The driver reads the model's contract from Triton and maps the DataFrame's columns exactly as
`qscore batch score` maps a file's (`map_columns`: bad columns fail here, before any task
runs). The executors score with `mapInArrow`: each Arrow record batch is prepared
(`prepare_chunk`: unscoreable rows aside), scored by the direct engine (`DirectEngine`: the
registry's production version, a pinned version or label, a canary flight routed by id) and
turned into output columns (`output_table`), as the CLI does per chunk. Every Python worker
process keeps ONE Triton client (one gRPC channel, on one event-loop thread) in a module-level
cache for all its tasks.

The result has one row per input row: the id, the outputs and `model_version`, with `error`
null; an unscoreable row has null outputs and its reason in `error` (the CLI's side file).
`ScoredFrames.scored` and `.rejected` split it (persist `.all` first, or each is scored again).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from qscore.batch.chunks import Chunk
from qscore.batch.engines import DirectEngine
from qscore.batch.job import VERSION_COLUMN, output_table
from qscore.batch.mapping import ColumnMapping, MappingError, map_columns
from qscore.batch.rows import prepare_chunk
from qscore.contracts.model_spec import ModelSpec, TensorSpec
from qscore.inference.client import TritonClient
from qscore.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

T = TypeVar("T")
ERROR_COLUMN = "error"  # null: scored; else why the row could not be (as in the CLI's side file)

# Triton datatypes -> Spark SQL type names (BYTES outputs are not supported in a DataFrame here).
_SPARK_TYPES = {
    "BOOL": "boolean",
    "INT8": "byte",
    "INT16": "short",
    "INT32": "integer",
    "INT64": "long",
    "UINT8": "short",
    "UINT16": "integer",
    "UINT32": "long",
    "FP16": "float",
    "FP32": "float",
    "FP64": "double",
}


@dataclass(frozen=True)
class SparkScoring:
    """What every executor task needs (pickled into the mapInArrow function)."""

    triton_url: str
    spec: ModelSpec
    mapping: ColumnMapping
    version: str | None
    registry_json: str | None  # the driver's routing table, shipped (executors may lack the file)
    output_schema_json: str  # the Spark output schema, as StructType.json()
    timeout_s: float = 60.0

    @property
    def cache_key(self) -> str:
        text = f"{self.triton_url}|{self.spec.name}|{self.version}|{self.registry_json}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ScoredFrames:
    all: DataFrame  # every row: outputs and model_version, or the error
    scored: DataFrame  # rows scored (error is null), without the error column
    rejected: DataFrame  # id and reason of the rows that could not be scored


def score_dataframe(
    frame: DataFrame,
    *,
    model: str,
    triton_url: str,
    id_column: str,
    version: str | None = None,
    registry_path: str | Path | None = None,
    overrides: dict[str, str] | None = None,
    outputs: list[str] | None = None,
    timeout_s: float = 60.0,
) -> ScoredFrames:
    """Score `frame` with `model` through the Triton at `triton_url` (reachable from the executors).

    MappingError (columns) or RegistryError (version) here, on the driver, before any task."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    if id_column not in frame.columns:
        raise MappingError(f"id column {id_column!r} is not in the DataFrame ({', '.join(frame.columns)})")
    spec = _run_here(lambda: _model_spec(triton_url, model, timeout_s))
    mapping = map_columns(
        spec, to_arrow_schema(frame.schema), overrides=overrides, id_column=id_column, outputs=outputs
    )
    registry = ModelRegistry(Path(registry_path) if registry_path else None)
    registry.resolve(model, version, available=spec.versions, routing_key="")  # unknown: refused now
    schema = output_schema(frame.schema, mapping)
    scoring = SparkScoring(
        triton_url=triton_url,
        spec=spec,
        mapping=mapping,
        version=version,
        registry_json=registry.path.read_text() if registry.path.is_file() else None,
        output_schema_json=schema.json(),
        timeout_s=timeout_s,
    )
    scored_all = frame.mapInArrow(partial(score_batches, scoring), schema).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    error = F.col(ERROR_COLUMN)
    return ScoredFrames(
        all=scored_all,
        scored=scored_all.filter(error.isNull()).drop(ERROR_COLUMN),
        rejected=scored_all.filter(error.isNotNull()).select(id_column, error.alias("reason")),
    )


def _run_here(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also where this thread already runs an
    event loop (a Jupyter or Databricks notebook cell): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


async def _model_spec(triton_url: str, model: str, timeout_s: float) -> ModelSpec:
    async with TritonClient(triton_url, timeout_s=timeout_s) as client:
        await client.wait_ready(timeout=timeout_s)
        return await client.model_spec(model)


def output_schema(input_schema: StructType, mapping: ColumnMapping) -> StructType:
    """id (its input type), one column per output ([1] plain, [k] an array), model_version, error."""
    from pyspark.sql.types import StringType, StructField, StructType

    assert mapping.id_column is not None
    fields = [StructField(mapping.id_column, input_schema[mapping.id_column].dataType, True)]
    fields += [StructField(spec.name, _spark_type(spec), True) for spec in mapping.outputs]
    fields += [StructField(VERSION_COLUMN, StringType(), True), StructField(ERROR_COLUMN, StringType(), True)]
    return StructType(fields)


def _spark_type(spec: TensorSpec) -> DataType:
    from pyspark.sql.types import ArrayType, _parse_datatype_string

    if spec.datatype not in _SPARK_TYPES:
        raise MappingError(f"output {spec.name!r} is {spec.datatype}: not supported in a Spark DataFrame")
    element = _parse_datatype_string(_SPARK_TYPES[spec.datatype])
    return element if spec.element_count() == 1 else ArrayType(element, True)


# --- executors ---------------------------------------------------------------------------


class _ProcessScorer:
    """One per Python worker process: a Triton client on its own event-loop thread."""

    def __init__(self, scoring: SparkScoring) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="qscore-triton", daemon=True).start()
        # The driver's routing table (none there: none here, so production = the newest version).
        registry_path = Path(tempfile.mkdtemp(prefix="qscore-spark-")) / "registry.json"
        if scoring.registry_json is not None:
            registry_path.write_text(scoring.registry_json)
        self.client = self.run(self._client(scoring.triton_url, scoring.timeout_s))
        self.engine = DirectEngine(
            self.client,
            scoring.spec,
            requested_version=scoring.version,
            registry=ModelRegistry(registry_path),
            outputs=[o.name for o in scoring.mapping.outputs],
        )

    @staticmethod
    async def _client(url: str, timeout_s: float) -> TritonClient:
        return TritonClient(url, timeout_s=timeout_s)  # created on the loop it will run on

    def run(self, work: Any) -> Any:
        """Run a coroutine on this process's Triton loop and wait for it (the task's thread waits)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()


_SCORERS: dict[str, _ProcessScorer] = {}
_SCORERS_LOCK = threading.Lock()


def process_scorer(scoring: SparkScoring) -> _ProcessScorer:
    """This process's scorer for `scoring` (created on first use, then reused by every task)."""
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(scoring.cache_key)
        if scorer is None:
            scorer = _SCORERS[scoring.cache_key] = _ProcessScorer(scoring)
        return scorer


def score_batches(scoring: SparkScoring, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The mapInArrow function: each input record batch -> one output batch, rows aligned by id."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    scorer = process_scorer(scoring)
    schema = to_arrow_schema(StructType.fromJson(_json(scoring.output_schema_json)))
    for batch in batches:
        if batch.num_rows:
            yield score_batch(scorer, scoring, batch, schema)


def score_batch(
    scorer: _ProcessScorer, scoring: SparkScoring, batch: pa.RecordBatch, schema: pa.Schema
) -> pa.RecordBatch:
    mapping = scoring.mapping
    prepared = prepare_chunk(Chunk(0, 0, batch), mapping, allow_non_finite=scoring.spec.allow_non_finite)
    pieces: list[pa.Table] = []
    if prepared.rows:
        scored = scorer.run(scorer.engine.score(prepared))
        table = output_table(prepared, scored, mapping)
        pieces.append(table.append_column(ERROR_COLUMN, pa.nulls(table.num_rows, pa.string())))
    rejected = prepared.rejected
    if rejected.num_rows:
        columns: dict[str, Any] = {mapping.id_name: rejected.column(mapping.id_name)}
        for field in schema:
            if field.name not in (mapping.id_name, ERROR_COLUMN):
                columns[field.name] = pa.nulls(rejected.num_rows, field.type)
        columns[ERROR_COLUMN] = rejected.column("reason")
        pieces.append(pa.table(columns))
    casted = [_conform(piece, schema) for piece in pieces]
    return pa.concat_tables(casted).combine_chunks().to_batches()[0]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The Spark schema's names and types (a [k] output's fixed-size list becomes a list)."""
    return pa.table([table.column(field.name).cast(field.type) for field in schema], schema=schema)


def _json(text: str) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(text)
    return value
