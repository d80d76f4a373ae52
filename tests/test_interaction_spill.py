"""The Blob interaction log keeps what it accepted: while Blob Storage is down, batches spill to
local disk; when it is back they are uploaded in order, each record once. What the spill cannot
hold is dropped and counted (attribute `dropped`, metric qscore.interaction_log.dropped).

Against a real Azurite: the log starts pointed at a port where nothing listens (Blob down), then
an Azurite is started on that very port (Blob back)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from qscore.monitoring.blob_log import BlobInteractionLog, read_blob_records
from qscore.monitoring.interaction_log import DROPPED_METRIC
from qscore.monitoring.records import InteractionRecord
from qscore.telemetry import InMemoryTelemetry
from qscore_local.azurite import AzuriteEndpoint, LocalAzurite, find_azurite_blob
from qscore_local.azurite.launcher import connection_string
from tests.fixtures.ports import free_port


def _record(index: int) -> InteractionRecord:
    return InteractionRecord(
        at=time.time() - 100 + index * 0.01,
        request_id=f"r{index:03d}",
        model="digits",
        version="2" if index % 3 else "1",  # two partitions: more than one blob per batch
        prediction=[index % 10],
    )


def _dead_blob(monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    port = free_port()
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", connection_string("127.0.0.1", port))
    return port, f"http://127.0.0.1:{port}/devstoreaccount1/interactions-{uuid.uuid4().hex[:8]}/log"


async def test_records_spill_while_blob_is_down_and_arrive_once_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_azurite_blob()  # not installed: a failure here, never a skip
    port, url = _dead_blob(monkeypatch)
    spill = tmp_path / "spill"
    log = BlobInteractionLog(url, flush_interval_s=0.05, write_batch=20, spill_dir=spill, retry_initial_s=0.2)
    for index in range(50):
        assert await log.log(_record(index))
    assert await log.flush()
    assert log.written == 0 and log.spilled == 50 and log.dropped == 0
    assert log.spill_pending >= 1 and sorted(spill.glob("*.jsonl"))
    for index in range(50, 80):  # still down: these queue behind the older spilled ones
        assert await log.log(_record(index))
    assert await log.flush()
    with LocalAzurite(port=port, location=tmp_path / "azurite"):
        for _ in range(20):  # each flush tries the spill at once; a start-up hiccup gets another try
            assert await log.flush()
            if log.spill_pending == 0:
                break
        for index in range(80, 90):  # Blob is back: new records go straight up
            assert await log.log(_record(index))
        await log.close()
        records = read_blob_records(url)
    assert log.spill_pending == 0 and not list(spill.glob("*.jsonl"))
    assert log.written == 90 and log.dropped == 0 and log.failed == 0
    ids = [record.request_id for record in records]
    assert sorted(ids) == [f"r{index:03d}" for index in range(90)]  # none lost, none twice


async def test_what_the_spill_cannot_hold_is_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, telemetry_capture: InMemoryTelemetry
) -> None:
    _, url = _dead_blob(monkeypatch)
    one_batch = len(_record(0).model_dump_json()) * 12  # room for one batch of 10, not two
    log = BlobInteractionLog(
        url, flush_interval_s=0.05, write_batch=10, spill_dir=tmp_path / "spill", spill_max_bytes=one_batch
    )
    for index in range(20):
        assert await log.log(_record(index))
    assert await log.flush()
    await log.close()
    assert log.spilled == 10 and log.dropped == 10 and log.written == 0
    # The kept batch stays on disk for the next process to upload.
    assert len(list((tmp_path / "spill").glob("*.jsonl"))) == 1
    dropped: list[Any] = telemetry_capture.metric_points(DROPPED_METRIC)
    assert sum(point.value for point in dropped) == 10
    by_reason = {point.attributes["reason"]: point.value for point in dropped}
    assert by_reason == {"spill_full": 10, "queue_full": 0}  # exported at 0 from the start


async def test_a_backed_up_buffer_spills_to_disk_then_uploads_in_order(
    azurite: AzuriteEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blob is up but the queue is over half full: batches go to disk (fast) instead of waiting
    on uploads, and are uploaded once the queue has drained."""
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    url = f"{azurite.blob_url}/interactions-{uuid.uuid4().hex[:8]}/log"
    release = threading.Event()
    first = _record(0)

    def held_first() -> InteractionRecord:  # the writer thread is busy with it while the queue fills
        release.wait(10)
        return first

    log = BlobInteractionLog(
        url, flush_interval_s=0.05, write_batch=1, max_pending=4, spill_dir=tmp_path / "s"
    )
    assert await log.log(held_first)
    for index in range(1, 4):
        assert await log.log(_record(index))  # 3 queued >= half of 4: backing up
    release.set()
    assert await log.flush()
    await log.close()
    assert log.spilled >= 1 and log.spill_pending == 0 and log.dropped == 0
    assert [record.request_id for record in read_blob_records(url)] == [f"r{i:03d}" for i in range(4)]
