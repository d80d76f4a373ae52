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
