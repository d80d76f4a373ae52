"""The interaction log in Blob Storage, read back by `qscore model drift --source`.

Short form (default): the Blob sink written in-process to Azurite, partitioned model/version/date,
then drift reads it. Slow form: a real `qscore demo` of the image model with claim-check and the
Blob log; its summary names what went by reference; drift reads the log back from the demo's
Azurite data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qscore.monitoring.blob_log import BlobInteractionLog, read_blob_records
from qscore.monitoring.records import InputStats, InteractionRecord
from qscore_cli import app
from qscore_local.azurite import AzuriteEndpoint, LocalAzurite

QSCORE = [sys.executable, "-c", "from qscore_cli import main; main()"]


def _record(index: int, shift: float) -> InteractionRecord:
    value = float(np.random.default_rng(index).normal(shift, 1.0))
    return InteractionRecord(
        at=time.time() - 100 + index * 0.1,
        request_id=f"r{index}",
        model="digit_images",
        version="1",
        inputs={},
        input_stats={"image": InputStats(count=1, mean=value, std=0.0, min=value, max=value)},
        prediction=[index % 10],
        max_probability=[0.9],
    )


async def test_blob_log_is_partitioned_and_read_back_by_model_drift(
    azurite: AzuriteEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    url = f"{azurite.blob_url}/interactions-{uuid.uuid4().hex[:8]}/prod"
    log = BlobInteractionLog(url, flush_interval_s=0.2)
    for index in range(60):
        await log.log(_record(index, shift=0.0 if index < 30 else 3.0))
    assert await log.flush()
    await log.close()
    assert log.written == 60 and log.failed == 0
    records = read_blob_records(url)
    assert [r.request_id for r in records] == [f"r{i}" for i in range(60)]
    day = time.strftime("%Y/%m/%d", time.gmtime(records[0].at))
    from qscore.monitoring.blob_log import _sync_container, parse_log_url

    container = _sync_container(parse_log_url(url))
    names = [blob.name for blob in container.list_blobs()]
    container.close()
    assert names and all(name.startswith(f"prod/digit_images/1/{day}/") for name in names), names
    result = CliRunner().invoke(
        app, ["model", "drift", "--source", url, "--window-records", "20", "--reference", "first-window"]
    )
    assert result.exit_code == 0, result.output
    assert "overall" in result.output
    missing = CliRunner().invoke(app, ["model", "drift", "--source", f"{azurite.blob_url}/no-such-container"])
    assert missing.exit_code != 0 and "container does not exist" in str(missing.exception), missing.output


@pytest.mark.slow
def test_demo_of_the_image_model_by_reference_and_its_log_read_back(tmp_path: Path) -> None:
    run_dir, summary_path = tmp_path / "run", tmp_path / "summary.json"
    command = [*QSCORE, "demo", "--model", "digit_images", "--requests", "60", "--workers", "1"]
    command += [
        "--claim-check-threshold",
        "2000",
        "--blob-log",
        "--run-dir",
        str(run_dir),
        "--json",
        str(summary_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["ok"] == 60 and summary["by_reference"] == 60 and summary["accuracy"] > 0.8
    assert "sent by reference (claim-check)" in result.stdout
    with LocalAzurite(location=run_dir / "azurite") as endpoint:
        import os

        os.environ["QSCORE_BLOB_CONNECTION"] = endpoint.connection_string
        try:
            drift = CliRunner().invoke(
                app,
                [
                    "model",
                    "drift",
                    "--source",
                    f"{endpoint.blob_url}/qscore-interactions",
                    "--window-records",
                    "20",
                ],
            )
        finally:
            del os.environ["QSCORE_BLOB_CONNECTION"]
    assert drift.exit_code == 0, drift.output
    assert "overall" in drift.output
