"""`qscore scale-sim` end to end on the real prod overlay (short simulation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qscore_cli import app
from qscore_cli.errors import UserError


def test_scale_sim_reports_plots_and_recommends(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"worker": {"messages_per_s_per_replica": 400}}))
    png = tmp_path / "sim.png"
    result = CliRunner().invoke(
        app,
        [
            "scale-sim",
            "--overlay",
            "prod",
            "--bench",
            str(bench),
            "--traffic",
            "ramp",
            "--peak-rate",
            "2000",
            "--period",
            "600",
            "--plot",
            str(png),
            "--target-age",
            "15",
        ],
    )
    assert result.exit_code == 0, result.output
    for figure in ("time to drain", "peak replicas", "queue age p99", "replica-seconds", "recommendation"):
        assert figure in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scale_sim_bad_input_is_a_user_error(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["scale-sim", "--overlay", "nope", "--per-replica-rate", "5"])
    assert isinstance(result.exception, UserError)
    result = runner.invoke(app, ["scale-sim", "--per-replica-rate", "5", "--traffic", "square"])
    assert isinstance(result.exception, UserError)
    with pytest.raises(AssertionError):
        assert result.exit_code == 0


def test_latest_bench_is_the_newest_queue_bench_by_shape(tmp_path: Path) -> None:
    """Other benchmarks' JSON (batch-rss-10m.json sorts after the timestamped names) is skipped;
    the newest queue bench is the latest `started_at`, whatever its name."""
    from qscore_tools.scaling.bench_input import latest_bench_result

    def write(name: str, body: object) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(body))
        return path

    assert latest_bench_result(tmp_path) is None
    write("batch-rss-10m.json", {"engine": "direct", "rows": 10_000_000})
    write("zz-list.json", [1, 2])
    (tmp_path / "zz-broken.json").write_text("{")
    assert latest_bench_result(tmp_path) is None
    write(
        "20261126T035958Z.json",
        {"started_at": "2026-11-26T03:59:58Z", "worker": {"messages_per_s_per_replica": 2641.9}},
    )
    newest = write(
        "renamed.json",
        {"started_at": "2026-12-01T21:19:02Z", "worker": {"messages_per_s_per_replica": 1193.1}},
    )
    write(
        "20261130T000000Z.json",
        {"started_at": "2026-11-30T00:00:00Z", "worker": {"messages_per_s_per_replica": 0}},
    )
    assert latest_bench_result(tmp_path) == newest


def test_scale_sim_compare_runs_on_the_repository_results(tmp_path: Path) -> None:
    """The README's command, without --bench: it reads the repository's bench/results."""
    png = tmp_path / "compare.png"
    result = CliRunner().invoke(app, ["scale-sim", "--compare", "--messages", "200000", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    from qscore_tools.scaling.bench_input import latest_bench_result, per_replica_rate_from_bench

    newest = latest_bench_result(Path(__file__).resolve().parent.parent / "bench" / "results")
    assert newest is not None and not newest.name.startswith("batch")
    # formatted as the CLI prints it
    assert f"{per_replica_rate_from_bench(newest):g} msg/s per replica" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
