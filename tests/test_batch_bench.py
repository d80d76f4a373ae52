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
    # What bounds a run on a shared machine: the engine's CPU per row against Triton's.
    assert run["cpu_us_per_row"] > 0 and run["triton_cpu_us_per_row"] > 0
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


def test_the_table_says_the_direct_engine_s_ratio_to_the_ceiling_with_its_peak_memory() -> None:
    from qscore_tools.bench.batch import markdown

    run = {"engine": "direct", "rows": 10, "workers": 0, "chunk_rows": 5, "rows_per_s": 80.0}
    run |= {"peak_rss_mb": 412.0, "accuracy": 1.0}
    text = markdown({"runs": [run], "ceiling_rows_per_s": 100.0, "direct_over_ceiling": 0.8})
    assert "direct engine / ceiling = 0.80 (goal 0.8), peak RSS 412 MB" in text


def test_the_table_gives_the_ceiling_before_and_after_the_engine_when_measured_twice() -> None:
    from qscore_tools.bench.batch import markdown

    run = {"engine": "direct", "rows": 10, "workers": 0, "chunk_rows": 5, "rows_per_s": 80.0}
    run |= {"peak_rss_mb": 412.0, "accuracy": 1.0}
    results = {"runs": [run], "ceiling_rows_per_s": 100.0, "direct_over_ceiling": 0.8}
    results |= {"ceiling_before_rows_per_s": 100.0, "ceiling_after_rows_per_s": 90.0}
    text = markdown(results)
    assert "ceiling 100 rows/s (the higher of 100 before the engine and 90 after)" in text
    assert "direct engine / ceiling = 0.80 (goal 0.8)" in text
