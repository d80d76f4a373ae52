"""`qscore batch bench`: the short form runs by default (direct engine, small file, no ceiling);
the full form (1 M rows, ceiling, queue engine with 1 and 2 workers) is `slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from qscore_tools.bench.batch import BatchBenchOptions, run_batch_bench


async def test_batch_bench_quick(tmp_path: Path) -> None:
    options = BatchBenchOptions(rows=3000, engines=["direct"], ceiling_s=0, out=tmp_path / "batch.json")
    results = await run_batch_bench(options)
    (run,) = results["runs"]
    assert run["rows"] == 3000 and run["accuracy"] >= 0.95 and run["peak_rss_mb"] > 0
    assert (tmp_path / "batch.json").is_file()


@pytest.mark.slow
async def test_batch_bench_full(tmp_path: Path) -> None:
    results = await run_batch_bench(BatchBenchOptions(out=tmp_path / "batch.json"))
    assert all(run["accuracy"] >= 0.95 for run in results["runs"])
    assert {(run["engine"], run["workers"]) for run in results["runs"]} == {
        ("direct", 0),
        ("queue", 1),
        ("queue", 2),
    }
