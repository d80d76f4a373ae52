"""The queue engine: chunks as multi-row requests through the real local bus.

With a real worker and real Triton the output is complete and accurate; with a worker that
answers every request twice (at-least-once delivery) every id is still written exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from qscore.batch import Backends, BatchJob, open_job, run_job
from qscore.producer import ProducerSettings
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
