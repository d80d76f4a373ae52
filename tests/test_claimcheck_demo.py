"""The interaction log in Blob Storage, read back by `qscore model drift --source`.

Short form (default): the Blob sink written in-process to Azurite, partitioned model/version/date,
then drift reads it. Slow form: a real `qscore demo` of the image model with claim-check and the
Blob log; its summary names what went by reference; drift reads the log back from the demo's
Azurite data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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


@pytest.mark.slow
async def test_qscore_enqueue_sends_a_4mb_image_by_reference_to_a_worker_process(
    bus: Any, triton: Any, azurite: AzuriteEndpoint, fresh_queue: str, tmp_path: Path
) -> None:
    import asyncio

    from qscore.claimcheck import ClaimCheckSettings, ClaimStore
    from qscore.inference.images import digit_png
    from qscore.inference.testset import load_digits_test_set
    from qscore_local.workers import WorkerPool

    test_set = load_digits_test_set()
    image = tmp_path / "four-mb.png"
    image.write_bytes(digit_png(test_set.pixels[9], side=2450, seed=9))
    container = f"claims-{uuid.uuid4().hex[:8]}"
    blob_env = {
        "QSCORE_BLOB_CONNECTION": azurite.connection_string,
        "QSCORE_CLAIM_CHECK_CONTAINER": container,
    }
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": bus.connection_string,
        "QSCORE_TRITON_URL": triton.grpc_url,
        "QSCORE_REQUEST_QUEUE": fresh_queue,
        "QSCORE_REGISTRY_PATH": str(tmp_path / "registry.json"),
        **blob_env,
    }
    pool = WorkerPool(count=1, env=env, log_dir=tmp_path)
    await pool.start(timeout_s=60)
    try:
        command = [*QSCORE, "enqueue", "--image", str(image), "--model", "digit_images"]
        command += ["--connection", bus.connection_string, "--request-queue", fresh_queue]
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, **blob_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), 120))[0].decode()
    finally:
        await pool.stop()
    assert process.returncode == 0, output
    assert f"label=[{int(test_set.labels[9])}]" in output, output
    store = ClaimStore(ClaimCheckSettings(connection=azurite.connection_string, container=container))
    try:
        assert await store.names() == []
    finally:
        await store.close()
