"""`qscore model ...` through typer's CliRunner, plus the one-line errors of the real entry point."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qscore.monitoring import InteractionRecord
from qscore.registry import ModelRegistry, routing_fraction
from qscore_cli import app, main

runner = CliRunner()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A local model repository with digits versions 1 and 2."""
    for version in ("1", "2"):
        (tmp_path / "repo" / "digits" / version).mkdir(parents=True)
    return tmp_path / "repo"


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.json"


def model(registry_path: Path, repo: Path, *args: str) -> str:
    """Run `qscore model ARGS` and return its output (the command must succeed)."""
    options = ["--registry", str(registry_path)]
    if args[0] in ("promote", "flight"):
        options += ["--repo", str(repo)]
    result = runner.invoke(app, ["model", *args, *options])
    assert result.exit_code == 0, result.output
    return result.output


def qscore_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run the real entry point; assert the one-line, exit-code-2 contract; return the line."""
    monkeypatch.setattr(sys, "argv", ["qscore", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_promote_and_rollback(registry_path: Path, repo: Path) -> None:
    assert "production (newest) -> 1" in model(registry_path, repo, "promote", "digits", "1")
    assert "production 1 -> 2" in model(registry_path, repo, "promote", "digits", "2", "--note", "mlp")
    assert ModelRegistry(registry_path).entry("digits").production == "2"
    assert "production 2 -> 1" in model(registry_path, repo, "rollback", "digits")
    assert ModelRegistry(registry_path).entry("digits").production == "1"
    status = model(registry_path, repo, "status", "digits")
    assert "History of digits" in status and "rollback" in status and "mlp" in status


@pytest.mark.parametrize(("mode", "weight"), [("canary", 0.2), ("shadow", 0.3)])
def test_flight_routes_close_to_its_weight(registry_path: Path, repo: Path, mode: str, weight: float) -> None:
    model(registry_path, repo, "promote", "digits", "1")
    out = model(registry_path, repo, "flight", "digits", "2", "--mode", mode, "--weight", str(weight))
    assert f"{mode} flight of version 2" in out
    store = ModelRegistry(registry_path)
    routes = [
        store.resolve("digits", None, available=["1", "2"], routing_key=str(uuid.uuid4()))
        for _ in range(20_000)
    ]
    flighted = [r for r in routes if (r.version == "2" if mode == "canary" else r.shadow_version == "2")]
    assert abs(len(flighted) / len(routes) - weight) < 0.02
    assert all(r.version == "1" for r in routes) == (mode == "shadow")
    assert f"{mode} v2 @ {weight:.0%}" in model(registry_path, repo, "status")
    table = model(registry_path, repo, "routes", "digits", "--requests", "2000", "--repo", str(repo))
    assert "Routing of 2000 request ids" in table and "v2" in table
    assert "flight of version 2 ended" in model(registry_path, repo, "end-flight", "digits")
    assert ModelRegistry(registry_path).entry("digits").flight is None


def test_same_request_id_always_takes_the_same_route() -> None:
    assert routing_fraction("request-42") == routing_fraction("request-42")
    fractions = np.array([routing_fraction(f"r{index}") for index in range(5000)])
    assert fractions.min() >= 0.0 and fractions.max() < 1.0 and abs(fractions.mean() - 0.5) < 0.02


def test_status_of_an_empty_registry(registry_path: Path, repo: Path) -> None:
    assert "is empty" in model(registry_path, repo, "status")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "digits", "9"], "has no version 9"),
        (["promote", "nope", "1"], "'nope' is not in the model repository"),
        (["promote", "digits", "latest"], "version must be a number"),
        (["flight", "digits", "7", "--mode", "canary"], "has no version 7"),
        (["rollback", "digits"], "no earlier production version"),
        (["end-flight", "digits"], "has no flight to end"),
        (["status", "digits"], "not in the registry"),
    ],
)
def test_errors_are_one_line(
    args: list[str],
    message: str,
    registry_path: Path,
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = qscore_error(
        capsys,
        monkeypatch,
        "model",
        *args,
        "--registry",
        str(registry_path),
        *(["--repo", str(repo)] if args[0] in ("promote", "flight") else []),
    )
    assert line.startswith("error: ") and message in line


def test_flighting_the_production_version_is_refused(
    registry_path: Path, repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model(registry_path, repo, "promote", "digits", "2")
    line = qscore_error(
        capsys,
        monkeypatch,
        "model",
        "flight",
        "digits",
        "2",
        "--registry",
        str(registry_path),
        "--repo",
        str(repo),
    )
    assert "already production" in line


def test_damaged_registry_file_is_one_line(
    registry_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_path.write_text("{not json")
    line = qscore_error(capsys, monkeypatch, "model", "status", "--registry", str(registry_path))
    assert f"cannot read {registry_path}" in line


def test_missing_repository_is_one_line(
    registry_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [
        "model",
        "promote",
        "digits",
        "1",
        "--registry",
        str(registry_path),
        "--repo",
        str(tmp_path / "none"),
    ]
    assert "does not exist" in qscore_error(capsys, monkeypatch, *args)
    result = runner.invoke(app, [*args, "--no-check"])
    assert result.exit_code == 0, result.output


def _write_log(path: Path, rng: np.random.Generator) -> None:
    lines = []
    for window, shift in enumerate((0, 0, 5)):
        for index in range(200):
            pixels = np.clip(np.round(rng.normal(6 + shift, 3, 16)), 0, 16).tolist()
            record = InteractionRecord(
                at=window * 1000 + index,
                request_id=f"{window}-{index}",
                model="other",
                version="1",
                inputs={"x": [pixels]},
                prediction=[int(rng.integers(0, 10))],
                max_probability=[float(rng.uniform(0.8, 1.0))],
            )
            lines.append(record.model_dump_json())
    lines.append(
        InteractionRecord(at=5, request_id="s", model="other", version="2", route="shadow").model_dump_json()
    )
    path.write_text("\n".join(lines) + "\n")


def test_drift_command_prints_table_and_plots(tmp_path: Path) -> None:
    log = tmp_path / "interactions.jsonl"
    _write_log(log, np.random.default_rng(7))
    plot = tmp_path / "plots" / "drift.png"
    args = ["model", "drift", "--log", str(log), "--window-records", "200", "--plot", str(plot)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "Drift against first window" in result.output and "overall: drift over 2 window(s)" in result.output
    )
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert runner.invoke(app, [*args, "--fail-on-drift"]).exit_code == 1
    shadow_only = runner.invoke(app, ["model", "drift", "--log", str(log), "--route", "shadow"])
    assert shadow_only.exit_code != 0  # one shadow row: no scored interactions on that route


def test_drift_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no interaction log" in qscore_error(
        capsys, monkeypatch, "model", "drift", "--log", str(tmp_path / "x")
    )
    log = tmp_path / "log.jsonl"
    _write_log(log, np.random.default_rng(8))
    line = qscore_error(capsys, monkeypatch, "model", "drift", "--log", str(log), "--reference", "nope.npz")
    assert "neither 'auto'" in line
    line = qscore_error(capsys, monkeypatch, "model", "drift", "--log", str(log), "--model", "digits")
    assert "no scored interactions" in line
    line = qscore_error(capsys, monkeypatch, "model", "drift", "--log", str(log), "--route", "sideways")
    assert "--route must be" in line
