"""The queue engine: chunks as multi-row requests through the real local bus.

With a real worker and real Triton the output is complete and accurate; with a worker that
answers every request twice (at-least-once delivery) every id is still written exactly once.
Chunks over the inline limit go by reference through Azurite (claim-check), or stop the job
with one line when no Blob account is set; an unknown version is refused before any sending.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscore.batch import Backends, BatchJob, open_job, run_job
from qscore.batch.engines import ScoringFailed
from qscore.batch.queue_engine import QueueEngine
from qscore.batch.rows import PreparedChunk
from qscore.claimcheck import ClaimCheckSettings, ClaimStore
from qscore.producer import ProducerSettings
from qscore_local.azurite import AzuriteEndpoint
from tests.batch_data import write_digits_parquet
from tests.fixtures.producer import FAKE_LABEL, FakeWorker
from tests.fixtures.worker import WorkerSettingsFactory, running_worker

REPO = Path(__file__).resolve().parents[1] / "triton_repo"


async def _score(job: BatchJob, backends: Backends) -> Any:
    async with open_job(job, backends) as opened:
        return await run_job(opened, backends)


async def test_queue_engine_through_a_real_worker(
    bus: Any, fresh_queue: str, worker_settings: WorkerSettingsFactory, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    labels = write_digits_parquet(source, 2000)
    output = tmp_path / "out.parquet"
    settings = ProducerSettings(
        connection=bus.connection_string, request_queue=fresh_queue, binary_tensors=True
    )
    backends = Backends(repository=REPO, producer=settings, reply_timeout_s=60)
    job = BatchJob(
        input=str(source), output=str(output), model="digits", engine="queue", id_column="id", in_flight=4
    )
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        summary = await _score(job, backends)
    assert summary.rows_scored == 2000 and summary.chunks == 8  # 256 rows (max_batch_size) a chunk
    table = pq.read_table(output)
    assert (np.asarray(table["id"]) == np.arange(2000)).all()
    assert (np.asarray(table["label"]) == labels).mean() >= 0.95
    assert set(table["model_version"].to_pylist()) == {"2"}


class _EveryReplyTwice(dict[str, int]):
    def get(self, key: str, default: Any = None) -> int:  # type: ignore[override]
        return 2


async def test_duplicate_replies_are_written_once(
    producer_bus: Any, fake_worker: FakeWorker, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, 1000)
    output = tmp_path / "out.parquet"
    settings = ProducerSettings(connection=producer_bus.connection_string)
    backends = Backends(repository=REPO, producer=settings, reply_timeout_s=30)
    job = BatchJob(
        input=str(source),
        output=str(output),
        model="digits",
        engine="queue",
        outputs=["label"],
        chunk_rows=100,
    )
    saved, fake_worker.replies_for = fake_worker.replies_for, _EveryReplyTwice()
    try:
        summary = await _score(job, backends)
    finally:
        fake_worker.replies_for = saved
    table = pq.read_table(output)
    assert (np.asarray(table["row"]) == np.arange(1000)).all() and summary.rows_total == 1000
    assert set(table["label"].to_pylist()) == {FAKE_LABEL}


async def test_chunks_over_the_inline_limit_go_by_reference_through_azurite(
    bus: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    azurite: AzuriteEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A 4 KiB threshold puts every 256-row chunk (~88 KB) through Blob; the worker reads the
    # same settings, so its replies (over 4 KiB too) come back by reference.
    container = f"batch-claims-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_CONTAINER", container)
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_THRESHOLD_BYTES", "4096")
    source = tmp_path / "in.parquet"
    labels = write_digits_parquet(source, 600)
    output = tmp_path / "out.parquet"
    settings = ProducerSettings(
        connection=bus.connection_string, request_queue=fresh_queue, binary_tensors=True
    )
    backends = Backends(repository=REPO, producer=settings, reply_timeout_s=60)
    job = BatchJob(input=str(source), output=str(output), model="digits", engine="queue", id_column="id")
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        summary = await _score(job, backends)
    assert summary.rows_scored == 600 and summary.chunks == 3 and summary.chunks_by_reference == 3
    table = pq.read_table(output)
    assert (np.asarray(table["id"]) == np.arange(600)).all()
    assert (np.asarray(table["label"]) == labels).mean() >= 0.95
    store = ClaimStore(ClaimCheckSettings(connection=azurite.connection_string, container=container))
    try:
        for _ in range(50):  # the worker deletes a request's blob just after replying
            if not await store.names():
                break
            await asyncio.sleep(0.1)
        assert await store.names() == []
    finally:
        await store.close()


async def test_a_chunk_over_the_inline_limit_without_claim_check_stops_the_job_with_one_line() -> None:
    producer = SimpleNamespace(claims=SimpleNamespace(store=None))
    engine = QueueEngine(producer, model="digits", requested_version=None)  # type: ignore[arg-type]
    rows = 1024
    chunk = PreparedChunk(
        7, pa.array(np.arange(rows)), {"pixels": np.ones((rows, 64), np.float32) * 0.123456}, pa.table({})
    )
    with pytest.raises(
        ScoringFailed, match=r"chunk 7: its request is .* bytes, over the queue's inline limit"
    ):
        await engine.score(chunk)


def test_an_unknown_version_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, 10)
    command = [sys.executable, "-c", "from qscore_cli import main; main()", "batch", "score", str(source)]
    command += ["--model", "digits", "-o", str(tmp_path / "out.parquet"), "--engine", "queue"]
    command += ["--version", "99", "--repo", str(REPO), "--registry", str(tmp_path / "reg.json")]
    # Nothing listens there: the version is refused before the bus is ever asked.
    command += ["--connection", "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=k;SharedAccessKey=v"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no version 99" in lines[0], proc.stderr
    assert not (tmp_path / "out.parquet.batch").exists()
