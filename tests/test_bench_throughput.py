"""Issue 16's bench phases: goals, summary and plot from a synthetic run (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qscore_tools.bench.goals import evaluate
from qscore_tools.bench.report import write_results
from qscore_tools.bench.throughput import LaneResults, ThroughputResults
from tests.test_bench import _measurement, synthetic_run


def _throughput() -> ThroughputResults:
    results = ThroughputResults("digits")
    results.sweep = {1: _measurement("digits", 3000.0), 128: _measurement("digits", 400.0)}
    results.items = _measurement("digits", 200.0)
    results.coalesce_on = _measurement("digits", 6000.0)
    results.coalesce_off = _measurement("digits", 1000.0)
    results.lanes = LaneResults(
        high_alone=_measurement("digits", 100.0, mode="open", offered=100.0),
        low_alone=_measurement("digits", 1000.0),
        high_mixed=_measurement("digits", 100.0, mode="open", offered=100.0),
        low_mixed=_measurement("digits", 700.0),
    )
    return results


def test_throughput_goals_summary_and_plot(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    run.throughput = _throughput()
    goals = {goal.name: goal for goal in evaluate(run)}
    rows = goals["digits samples/s at 128 rows per message / direct ceiling"]
    assert rows.measured == pytest.approx(0.4) and rows.met  # ceiling 1000 samples/s
    items = goals["digits samples/s at 128 items per message / direct ceiling"]
    assert items.measured == pytest.approx(0.2) and items.met is False
    assert goals["coalescing gain, single-row score() (on / off)"].measured == pytest.approx(6.0)
    assert goals["high-lane p99, low lane saturated / high lane alone"].measured == pytest.approx(1.0)
    kept = goals["low-lane throughput kept beside the high lane"]
    assert kept.measured == pytest.approx(0.7) and kept.met is False
    assert goals["digits p99 at a quarter of the peak (ms)"].measured is not None
    files, document = write_results(run, tmp_path)
    assert document["throughput"]["coalesce_gain"] == pytest.approx(6.0)
    assert "Requests per message, coalescing, lanes" in files.markdown_path.read_text()
    assert any(path.name.endswith("-items-per-message.png") for path in files.plots)


def test_without_the_phases_there_are_no_throughput_goals(tmp_path: Path) -> None:
    names = [goal.name for goal in evaluate(synthetic_run(tmp_path))]
    assert not any("per message" in name or "lane" in name for name in names)
