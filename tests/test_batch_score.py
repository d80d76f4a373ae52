"""`qscore batch score` against real Triton (and Azurite for Blob): every format, bad input as
one line with exit code 2, registry routing, and kill -9 half way then the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscore.batch.formats import Format, read_batches
from qscore.registry import Flight, ModelRegistry
from qscore_local.triton.launcher import TritonEndpoints
from tests.batch_data import write_digits_csv, write_digits_jsonl, write_digits_parquet

CLI = [sys.executable, "-c", "from qscore_cli import main; main()"]


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """Run `qscore ...` in this process; (exit code, stderr)."""
    from qscore_cli import main

    monkeypatch.setattr(sys, "argv", ["qscore", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    return int(code or 0), capsys.readouterr().err


def _column(path: Path, fmt: Format, name: str) -> list[object]:
    return [v for batch in read_batches(path, fmt) for v in batch.column(name).to_pylist()]


@pytest.fixture
def score_args(triton: TritonEndpoints, tmp_path: Path) -> list[str]:
    return [
        "--model",
        "digits",
        "--triton-url",
        triton.grpc_url,
        "--registry",
        str(tmp_path / "reg.json"),
        "--no-progress",
    ]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_each_format_is_scored_accurately_in_its_own_format(
    fmt: str,
    tmp_path: Path,
    score_args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / f"in.{fmt}"
    writer = {"parquet": write_digits_parquet, "csv": write_digits_csv, "jsonl": write_digits_jsonl}[fmt]
    labels = writer(source, 1200)
    extra = {
        "parquet": ["--id-column", "id"],
        "csv": ["--map", "pixels=px_*", "--id-column", "key"],
        "jsonl": ["--id-column", "id"],
    }[fmt]
    output = tmp_path / f"out.{fmt}"
    code, err = run_cli(
        ["batch", "score", str(source), "-o", str(output), "--chunk-rows", "500", *score_args, *extra],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    predicted = np.array(_column(output, Format(fmt), "label"))
    assert len(predicted) == 1200 and (predicted == labels).mean() >= 0.95
    # CSV reads the version back as a number
    assert {str(v) for v in _column(output, Format(fmt), "model_version")} == {"2"}


def test_npz_input_and_unscoreable_rows(
    tmp_path: Path, score_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = np.tile(np.load("data/digits_test.npz")["pixels"].astype(np.float32)[:100], (1, 1))
    pixels[[3, 42]] = np.nan
    source = tmp_path / "in.npz"
    np.savez(source, pixels=pixels)
    output = tmp_path / "out.npz"
    code, err = run_cli(["batch", "score", str(source), "-o", str(output), *score_args], capsys, monkeypatch)
    assert code == 0, err
    as_csv = tmp_path / "out.csv"
    code, err = run_cli(
        ["batch", "score", str(source), "-o", str(as_csv), "--format", "csv", *score_args],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert as_csv.read_text().splitlines()[0].startswith('"row","probabilities_0"')
    with np.load(output) as scored, np.load(tmp_path / "out.rejected.npz") as rejected:
        assert len(scored["row"]) == 98 and scored["probabilities"].shape == (98, 10)
        assert rejected["row"].tolist() == [3, 42] and all(
            r.startswith("non_finite") for r in rejected["reason"]
        )


@pytest.mark.parametrize(
    ("make", "args", "expected"),
    [
        (lambda p: p.write_text("not parquet"), [], "not readable as parquet"),
        (lambda p: pq.write_table(pa.table({"x": [1.0]}), p), [], "wants 64 numbers a row"),
        (lambda p: pq.write_table(pa.table({"pixels": [["a"] * 64]}), p), [], "has type string"),
        (
            lambda p: pq.write_table(pa.table({"pixels": [[1.0] * 64]}), p),
            ["--id-column", "key"],
            "--id-column 'key'",
        ),
        (lambda p: pq.write_table(pa.table({"pixels": [[1.0] * 64]}), p), ["--version", "7"], "no version 7"),
        (lambda p: None, [], "no such file"),
    ],
)
def test_malformed_input_is_one_line_and_exit_2(
    make: object,
    args: list[str],
    expected: str,
    tmp_path: Path,
    score_args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "in.parquet"
    make(source)  # type: ignore[operator]
    output = tmp_path / "out.parquet"
    code, err = run_cli(
        ["batch", "score", str(source), "-o", str(output), *score_args, *args], capsys, monkeypatch
    )
    assert code == 2
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not output.exists() and not (tmp_path / "out.parquet.batch").exists()  # nothing scored


def test_a_missing_input_is_reported_before_triton_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Triton listens at --triton-url: the missing file is still the one error line."""
    missing, output = tmp_path / "missing.parquet", tmp_path / "out.parquet"
    nowhere = ["--model", "digits", "--triton-url", "127.0.0.1:1", "--no-progress"]
    code, err = run_cli(["batch", "score", str(missing), "-o", str(output), *nowhere], capsys, monkeypatch)
    assert code == 2 and err == f"error: {missing}: no such file\n", err
    assert not output.exists()


def test_registry_routes_as_at_runtime_and_a_pin_wins(
    tmp_path: Path, score_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, 600)
    registry = ModelRegistry(tmp_path / "reg.json")
    registry.promote("digits", "1")
    registry.set_flight("digits", Flight(mode="canary", version="2", weight=0.3))
    for name, extra in (("routed", []), ("pinned", ["--version", "2"])):
        code, err = run_cli(
            [
                "batch",
                "score",
                str(source),
                "-o",
                str(tmp_path / f"{name}.parquet"),
                "--id-column",
                "id",
                *score_args,
                *extra,
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
    routed = pq.read_table(tmp_path / "routed.parquet")
    share = (np.array(routed["model_version"].to_pylist()) == "2").mean()
    assert 0.15 < share < 0.45  # the canary's 30 %, routed by row id
    assert set(pq.read_table(tmp_path / "pinned.parquet")["model_version"].to_pylist()) == {"2"}


def test_kill_9_half_way_then_the_same_command_finishes_exactly_once(
    triton: TritonEndpoints, tmp_path: Path
) -> None:
    rows = 60_000
    source = tmp_path / "in.parquet"
    labels = write_digits_parquet(source, rows, row_group_rows=7_000)
    output = tmp_path / "out.parquet"
    command = [
        *CLI,
        "batch",
        "score",
        str(source),
        "--model",
        "digits",
        "-o",
        str(output),
        "--id-column",
        "id",
    ]
    command += ["--chunk-rows", "500", "--in-flight", "3", "--triton-url", triton.grpc_url, "--no-progress"]
    command += ["--registry", str(tmp_path / "reg.json"), "--summary-json", str(tmp_path / "summary.json")]
    manifest = tmp_path / "out.parquet.batch" / "manifest.jsonl"
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if manifest.exists() and manifest.read_text().count('"kind":"chunk"') >= 60:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert first.wait(30) == -signal.SIGKILL, "the first run ended before it was killed half way"
    assert not output.exists()
    second = subprocess.run(command, capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert second.returncode == 0, second.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 30_000 <= summary["rows_resumed"] < rows and summary["rows_total"] == rows
    table = pq.read_table(output)
    ids = np.asarray(table["id"])
    assert len(ids) == rows and (np.sort(ids) == np.arange(rows)).all()  # none missing, none twice
    assert (ids == np.arange(rows)).all()  # and in input order
    assert (np.asarray(table["label"]) == labels).mean() >= 0.95
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert again.returncode == 0 and "already complete" in again.stdout


async def test_blob_input_and_output_through_azurite(
    azurite: object, triton: TritonEndpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    from qscore.batch import Backends, BatchJob, open_job, run_job

    endpoint = azurite
    connection = endpoint.connection_string  # type: ignore[attr-defined]
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", connection)
    source = tmp_path / "in.parquet"
    labels = write_digits_parquet(source, 3000)
    async with BlobServiceClient.from_connection_string(connection) as service:
        container = service.get_container_client("batch-in")
        await container.create_container()
        await container.upload_blob("digits/in.parquet", source.read_bytes())
        base = endpoint.blob_url  # type: ignore[attr-defined]
        job = BatchJob(
            input=f"{base}/batch-in/digits/in.parquet",
            output=f"{base}/batch-out/scores/out.parquet",
            model="digits",
            id_column="id",
            chunk_rows=1000,
        )
        backends = Backends(triton_url=triton.grpc_url, registry_path=tmp_path / "reg.json")
        async with open_job(job, backends) as opened:
            summary = await run_job(opened, backends)
        assert summary.rows_scored == 3000
        out = service.get_container_client("batch-out")
        data = await (await out.download_blob("scores/out.parquet")).readall()
        names = [b.name async for b in out.list_blobs()]
    local = tmp_path / "out.parquet"
    local.write_bytes(data)
    table = pq.read_table(local)
    assert (np.asarray(table["id"]) == np.arange(3000)).all()
    assert (np.asarray(table["label"]) == labels).mean() >= 0.95
    assert names == ["scores/out.parquet", "scores/out.parquet.batch/manifest.jsonl"]  # parts cleaned up


def test_dry_run_shows_mapping_and_chunks_and_scores_nothing(
    tmp_path: Path, score_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.csv"
    write_digits_csv(source, 50)
    output = tmp_path / "out.csv"
    from qscore_cli import main

    monkeypatch.setattr(
        sys, "argv", ["qscore", "batch", "score", str(source), "-o", str(output), "--dry-run"]
    )
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--map", "pixels=px_*", "--chunk-rows", "20", *score_args])
    with pytest.raises(SystemExit) as exited:
        main()
    shown = capsys.readouterr().out
    assert exited.value.code == 0
    assert "pixels (FP32 [64]) <- 64 column(s) px_0 .. px_63" in shown and "3 of 20 rows" in shown
    assert not output.exists() and not (tmp_path / "out.csv.batch").exists()
