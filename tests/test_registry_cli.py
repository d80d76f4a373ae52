"""`qscore model ...` on a real MLflow registry (SQLite) through typer's CliRunner, plus the
one-line errors of the real entry point."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qscore.monitoring import InteractionRecord
from qscore.registry import ModelRegistry, routing_fraction
from qscore.registry.catalog import ModelCatalog
from qscore.registry.signature import ModelArtefacts
from qscore_cli import app, main

runner = CliRunner()
CHECKOUT_REPO = Path(__file__).resolve().parents[1] / "triton_repo"


def model(*args: str) -> str:
    """Run `qscore model ARGS` and return its output (the command must succeed)."""
    result = runner.invoke(app, ["model", *args])
    assert result.exit_code == 0, result.output
    return result.output


def qscore_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run the real entry point; assert the one-line, exit-code-2 contract; return the line."""
    monkeypatch.setattr(sys, "argv", ["qscore", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_register_records_signature_digests_and_metadata(mlflow_store: str) -> None:
    out = model(
        "register",
        str(CHECKOUT_REPO / "digits" / "2"),
        "--name",
        "digits",
        "--metric",
        "accuracy=0.97",
        "--data-fingerprint",
        "abc123",
        "--git-commit",
        "f" * 40,
    )
    assert "registered version 1" in out and "config.pbtxt" in out and "model.onnx" in out
    info = ModelCatalog(mlflow_store).state("digits").version("1")
    assert [tensor["name"] for tensor in info.signature["inputs"]] == ["pixels"]
    assert {tensor["name"] for tensor in info.signature["outputs"]} == {"probabilities", "label"}
    assert set(info.sha256) == {"config.pbtxt", "model.onnx"} and all(
        len(h) == 64 for h in info.sha256.values()
    )
    assert info.metrics == {"accuracy": 0.97} and info.data_fingerprint == "abc123"
    assert info.git_commit == "f" * 40 and info.registered_by == "tester"


def test_register_keeps_the_configs_class_output(mlflow_store: str, tmp_path: Path) -> None:
    folder = tmp_path / "named"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((CHECKOUT_REPO / "digits" / "1" / "model.onnx").read_bytes())
    config = (CHECKOUT_REPO / "digits" / "config.pbtxt").read_text()
    parameter = 'parameters { key: "qscore.predicted_class_output" value: { string_value: "label" } }\n'
    (folder / "config.pbtxt").write_text(config + parameter)
    model("register", str(folder), "--name", "digits")
    assert ModelCatalog(mlflow_store).state("digits").version("1").class_output == "label"


def test_promote_keeps_previous_and_rollback_moves_back(digits_catalog: ModelCatalog) -> None:
    assert "production (none) -> 1" in model("promote", "digits", "1")
    assert "production 1 -> 2" in model("promote", "digits", "2", "--note", "mlp")
    assert digits_catalog.state("digits").aliases == {"production": "2", "previous": "1"}
    assert "production 2 -> 1" in model("rollback", "digits")
    # The history is spent: a rollback never returns to the version it rolled back from.
    assert digits_catalog.state("digits").aliases == {"production": "1"}
    status = model("status", "digits")
    assert "History of digits" in status and "rollback" in status and "mlp" in status
    assert "tester" in status and "Versions of digits" in status and "accuracy=0.97" in status


def test_rollback_walks_the_production_history(
    digits_catalog: ModelCatalog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    digits_catalog.register("digits", ModelArtefacts.collect(CHECKOUT_REPO / "digits" / "2"))
    for version in ("1", "2", "3"):
        model("promote", "digits", version)
    assert digits_catalog.state("digits").aliases == {"production": "3", "previous": "2"}
    assert "production 3 -> 2" in model("rollback", "digits")
    assert digits_catalog.state("digits").aliases == {"production": "2", "previous": "1"}
    assert "production 2 -> 1" in model("rollback", "digits")
    assert digits_catalog.state("digits").aliases == {"production": "1"}
    line = qscore_error(capsys, monkeypatch, "model", "rollback", "digits")
    assert line.startswith("error: ") and "no previous production version" in line
    # A promote starts a new history entry: the version it replaces is the next rollback's target.
    assert "production 1 -> 3" in model("promote", "digits", "3")
    assert "production 3 -> 1" in model("rollback", "digits")


@pytest.mark.parametrize(
    ("flags", "mode", "weight"),
    [(["--canary", "20"], "canary", 0.2), (["--shadow", "--share", "30"], "shadow", 0.3)],
)
def test_flight_and_end_flight(
    digits_catalog: ModelCatalog, flags: list[str], mode: str, weight: float
) -> None:
    model("promote", "digits", "2")
    assert f"{mode} flight of version 1" in model("flight", "digits", "1", *flags)
    state = digits_catalog.state("digits")
    assert state.flight is not None and (state.flight.mode, state.flight.weight) == (mode, weight)
    assert state.aliases[mode] == "1"
    assert f"{mode} v1 @ {weight:.0%}" in model("status")
    assert "flight of version 1 ended" in model("end-flight", "digits")
    state = digits_catalog.state("digits")
    assert state.flight is None and mode not in state.aliases


def test_same_request_id_always_takes_the_same_route() -> None:
    # Pinned, so a change of the function (or a per-process salt, as Python's hash() has) fails:
    # the first 8 bytes of SHA-256 as a big-endian fraction. SHA-256("") is the well-known e3b0c442...
    assert routing_fraction("") == 0xE3B0C44298FC1C14 / 2**64
    assert routing_fraction("request-42") == 0xD4B46F2DAB2D42D8 / 2**64 == 0.8308782087798834
    fractions = np.array([routing_fraction(f"r{index}") for index in range(5000)])
    assert fractions.min() >= 0.0 and fractions.max() < 1.0 and abs(fractions.mean() - 0.5) < 0.02


def test_routes_of_a_routing_table(tmp_path: Path) -> None:
    table = tmp_path / "registry.json"
    entry = {"production": "2", "labels": {}, "flight": {"mode": "canary", "version": "1", "weight": 0.2}}
    table.write_text(json.dumps({"models": {"digits": entry}}))
    out = model("routes", "digits", "--requests", "4000", "--versions", "1,2", "--registry", str(table))
    assert "Routing of 4000 request ids" in out and "v1" in out
    store = ModelRegistry(table)
    routes = [
        store.resolve("digits", None, available=["1", "2"], routing_key=str(uuid.uuid4()))
        for _ in range(10_000)
    ]
    assert abs(sum(r.version == "1" for r in routes) / len(routes) - 0.2) < 0.02


def test_status_of_an_empty_registry(mlflow_store: str) -> None:
    assert "has no models" in model("status")


def _signature_changed(tmp_path: Path) -> Path:
    folder = tmp_path / "wide"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes((CHECKOUT_REPO / "digits" / "1" / "model.onnx").read_bytes())
    config = (CHECKOUT_REPO / "digits" / "config.pbtxt").read_text().replace("dims: [ 64 ]", "dims: [ 65 ]")
    (folder / "config.pbtxt").write_text(config)
    return folder


REFUSALS = [
    (["promote", "digits", "9"], "has no version '9'"),
    (["promote", "nope", "1"], "'nope' is not registered"),
    (["promote", "digits", "2"], "already production"),
    (["flight", "digits", "2", "--canary", "10"], "is production"),
    (["flight", "digits", "1"], "choose one of --canary"),
    (["flight", "digits", "7", "--canary", "10"], "has no version '7'"),
    (["rollback", "digits"], "no previous production version"),
    (["end-flight", "digits"], "has no flight to end"),
    (["register", "/nonexistent", "--name", "digits"], "is not a folder"),
    (["register", "SIGNATURE", "--name", "other"], "names the model 'digits', not 'other'"),
    (["promote", "digits", "3"], "different input/output signature"),
]


def test_refusals_are_one_line(
    digits_catalog: ModelCatalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digits_catalog.promote("digits", "2")
    digits_catalog.register("digits", ModelArtefacts.collect(_signature_changed(tmp_path / "a")))
    for args, message in REFUSALS:
        args = [str(_signature_changed(tmp_path / "b")) if arg == "SIGNATURE" else arg for arg in args]
        line = qscore_error(capsys, monkeypatch, "model", *args)
        assert line.startswith("error: ") and message in line, line


def test_signature_change_needs_the_flag(digits_catalog: ModelCatalog, tmp_path: Path) -> None:
    model("promote", "digits", "2")
    model("register", str(_signature_changed(tmp_path)), "--name", "digits")
    assert "production 2 -> 3" in model("promote", "digits", "3", "--allow-signature-change")


def test_damaged_routing_table_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "registry.json"
    table.write_text("{not json")
    line = qscore_error(capsys, monkeypatch, "model", "routes", "digits", "--registry", str(table))
    assert f"cannot read {table}" in line


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
