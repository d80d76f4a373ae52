"""Spark: `score_dataframe` on real Spark local[2] against the real local Triton equals the direct
engine (`qscore batch score`) row for row: ids, labels, probabilities, versions, and the same
rows set aside as unscoreable with the same reasons. The 1,000,000-row comparison is slow."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscore.batch.mapping import MappingError
from qscore_local.triton.launcher import TritonEndpoints
from tests.batch_data import digits_rows, write_digits_parquet


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One Spark local[2] session (one JVM start) for every Spark test in the run."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors' Python: this venv
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("qscore-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


def _with_unscoreable_rows(path: Path, rows: int) -> None:
    """Digits with a list column; row 5 has 63 values, row 7 a NaN (both set aside)."""
    pixels, _ = digits_rows(rows)
    values = [row.tolist() for row in pixels.astype(np.float32)]
    values[5] = values[5][:63]
    values[7][3] = float("nan")
    table = pa.table({"id": np.arange(rows), "pixels": pa.array(values, pa.list_(pa.float32()))})
    pq.write_table(table, path, row_group_size=700)


def _cli_score(source: Path, output: Path, triton: TritonEndpoints, registry: Path) -> None:
    from qscore_cli import main

    argv = ["qscore", "batch", "score", str(source), "--model", "digits", "-o", str(output)]
    argv += [
        "--id-column",
        "id",
        "--triton-url",
        triton.grpc_url,
        "--no-progress",
        "--registry",
        str(registry),
    ]
    saved, sys.argv = sys.argv, argv
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        sys.argv = saved


def _assert_same_rows(spark_table: pa.Table, cli_table: pa.Table) -> None:
    spark_table = spark_table.sort_by("id")
    assert spark_table.num_rows == cli_table.num_rows
    assert (np.asarray(spark_table["id"]) == np.asarray(cli_table["id"])).all()
    assert (np.asarray(spark_table["label"]) == np.asarray(cli_table["label"])).all()
    assert spark_table["model_version"].to_pylist() == cli_table["model_version"].to_pylist()
    got = np.asarray(spark_table["probabilities"].to_pylist(), dtype=np.float32)
    expected = np.stack(cli_table["probabilities"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_spark_scores_a_dataframe_as_the_direct_engine_does(
    spark: Any, triton: TritonEndpoints, tmp_path: Path
) -> None:
    from qscore.batch.spark import score_dataframe

    rows = 3_000
    source = tmp_path / "in.parquet"
    _with_unscoreable_rows(source, rows)
    registry = tmp_path / "reg.json"
    _cli_score(source, tmp_path / "cli.parquet", triton, registry)
    frame = spark.read.parquet(str(source)).repartition(2)  # both executor slots
    result = score_dataframe(
        frame, model="digits", triton_url=triton.grpc_url, id_column="id", registry_path=registry
    )
    _assert_same_rows(result.scored.toArrow(), pq.read_table(tmp_path / "cli.parquet"))
    rejected = result.rejected.orderBy("id").toArrow()
    cli_rejected = pq.read_table(tmp_path / "cli.rejected.parquet")
    assert rejected["id"].to_pylist() == cli_rejected["id"].to_pylist() == [5, 7]
    assert rejected["reason"].to_pylist() == cli_rejected["reason"].to_pylist()
    assert result.all.count() == rows
    result.all.unpersist()


async def test_spark_mapping_and_version_errors_come_on_the_driver(
    spark: Any, triton: TritonEndpoints, tmp_path: Path
) -> None:
    # async: score_dataframe is also called where an event loop runs (a notebook cell).
    from qscore.batch.spark import score_dataframe
    from qscore.registry import RegistryError

    frame = spark.createDataFrame([(1, 2.0)], "id long, other double")
    with pytest.raises(MappingError):
        score_dataframe(frame, model="digits", triton_url=triton.grpc_url, id_column="id")
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, 10)
    digits = spark.read.parquet(str(source))
    with pytest.raises(RegistryError, match="no version 99"):
        score_dataframe(digits, model="digits", triton_url=triton.grpc_url, id_column="id", version="99")
    with pytest.raises(MappingError, match="'key'"):
        score_dataframe(digits, model="digits", triton_url=triton.grpc_url, id_column="key")


@pytest.mark.slow
def test_a_million_rows_through_spark_equal_the_direct_engine(
    spark: Any, triton: TritonEndpoints, tmp_path: Path
) -> None:
    from qscore.batch.spark import score_dataframe

    rows = 1_000_000
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, rows)
    registry = tmp_path / "reg.json"
    _cli_score(source, tmp_path / "cli.parquet", triton, registry)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16384")
    frame = spark.read.parquet(str(source))
    result = score_dataframe(
        frame, model="digits", triton_url=triton.grpc_url, id_column="id", registry_path=registry
    )
    scored = tmp_path / "spark-scored"
    result.scored.write.parquet(str(scored))
    _assert_same_rows(pq.read_table(scored), pq.read_table(tmp_path / "cli.parquet"))
    assert result.rejected.count() == 0
    result.all.unpersist()
