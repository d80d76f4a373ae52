"""The interaction log: writes, reads back, rotates, and never makes the event loop wait."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from qscore.contracts import ScoreRequest, Tensor, Timings
from qscore.contracts.messages import ReplyStatus, ScoreReply
from qscore.monitoring import INTERACTION_LOG_ENV, InteractionLog, InteractionRecord, iter_records, log_files
from qscore.scoring import ScoredItem, ScoringItem


def _scored(request_id: str, rows: int = 2) -> ScoredItem:
    pixels = np.arange(rows * 64, dtype=np.float32).reshape(rows, 64) % 17
    request = ScoreRequest(model="digits", inputs={"pixels": Tensor.from_numpy(pixels)})
    item = ScoringItem(request_id=request_id, request=request, arrays={"pixels": pixels}, received_at=100.0)
    probabilities = np.full((rows, 10), 0.05, dtype=np.float32)
    probabilities[:, 3] = 0.55
    outputs: dict[str, np.ndarray] = {
        "probabilities": probabilities,
        "label": np.full((rows, 1), 3, dtype=np.int64),
    }
    return ScoredItem(item=item, outputs=outputs, model_version="2", batch_started_at=101.0, inference_ms=4.0)


def _record(index: int) -> InteractionRecord:
    return InteractionRecord(
        at=float(index), request_id=f"r{index}", model="digits", version="1", prediction=[1]
    )


async def test_scored_requests_are_logged_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    reply = ScoreReply(
        request_id="a", status=ReplyStatus.OK, model="digits", timings=Timings(total_ms=9.0), scored_by="w1"
    )
    async with InteractionLog(path) as log:
        assert await log.log_scored(_scored("a"), reply=reply, route="canary")
        assert await log.log(_record(7))
        assert await log.flush()
        assert log.written == 2
    first, second = list(iter_records(path))
    assert (first.request_id, first.version, first.route, first.scored_by) == ("a", "2", "canary", "w1")
    assert first.prediction == [3, 3]
    assert first.max_probability == [np.float32(0.55).item()] * 2
    assert len(first.inputs["pixels"]) == 2 and len(first.inputs["pixels"][0]) == 64
    assert first.input_stats["pixels"].count == 128
    assert first.timings["total_ms"] == 9.0
    assert second.request_id == "r7"


async def test_large_inputs_keep_only_summary_statistics(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    async with InteractionLog(path) as log:
        await log.log_scored(_scored("big", rows=100))  # 6400 values > the verbatim limit
    (record,) = iter_records(path)
    assert record.inputs == {} and record.input_stats["pixels"].count == 6400


async def test_log_rotates_by_size_and_reads_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = InteractionLog(path, max_bytes=2_000, backups=2, write_batch=4)
    for index in range(200):
        assert await log.log(_record(index))
        if index % 4 == 3:
            await log.flush()  # small batches so rotation happens many times
    await log.close()
    assert [file.name for file in log_files(path)] == ["log.jsonl.2", "log.jsonl.1", "log.jsonl"]
    assert all(file.stat().st_size <= 2_000 for file in log_files(path))
    kept = [int(record.request_id[1:]) for record in iter_records(path)]
    assert kept == sorted(kept) and kept[-1] == 199 and 0 not in kept


async def test_logging_never_waits_for_a_stalled_writer(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    disk_stalled = threading.Event()
    release = threading.Event()

    def stalled_record() -> InteractionRecord:
        disk_stalled.set()
        release.wait(30)  # the writer thread is stuck here, like a hung disk
        return _record(0)

    log = InteractionLog(path, max_pending=10)
    assert log.log_nowait(stalled_record)
    assert disk_stalled.wait(10)
    # The writer is stuck; these calls still return at once (were they to wait, `release` would
    # never be set and the test would hang): 10 fit the queue, the rest are dropped and counted.
    accepted = [await log.log(_record(index)) for index in range(1, 26)]
    release.set()
    await log.close()
    assert accepted.count(True) == 10 and log.dropped == 15
    assert log.written == 11


async def test_a_record_that_fails_to_build_is_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"

    def broken() -> InteractionRecord:
        raise ValueError("boom")

    async with InteractionLog(path) as log:
        await log.log(broken)
        await log.log(_record(1))
    assert log.failed == 1 and [r.request_id for r in iter_records(path)] == ["r1"]


async def test_torn_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(_record(1).model_dump_json() + "\n" + '{"at": 2, "request_' + "\n\n")
    assert [r.request_id for r in iter_records(path)] == ["r1"]


async def test_log_is_off_unless_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERACTION_LOG_ENV, raising=False)
    assert InteractionLog.from_env() is None
    monkeypatch.setenv(INTERACTION_LOG_ENV, str(tmp_path / "x.jsonl"))
    log = InteractionLog.from_env()
    assert log is not None and log.path == tmp_path / "x.jsonl"
    await log.close()


def test_small_output_summaries_in_python_match_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs of a few values are summarized in Python (cheaper on the log's thread): the same
    predictions and confidences as the numpy path, NaN, negatives and ties included."""
    from qscore.monitoring import records

    rng = np.random.default_rng(7)
    cases = []
    for trial in range(400):
        rows, width = int(rng.integers(1, 5)), int(rng.integers(1, 12))
        values = rng.random((rows, width)).astype(np.float32 if trial % 2 else np.float64)
        if trial % 3 == 0:
            values = values / values.sum(axis=1, keepdims=True)
        if trial % 7 == 0:
            values[0, 0] = np.nan
        if trial % 11 == 0:
            values[0, 0] = -0.1
        if trial % 13 == 0:
            values[:] = 1.0 / width  # every class tied
        outputs = {"p": values} if trial % 2 else {"p": values, "label": np.arange(rows).reshape(rows, 1)}
        cases.append(outputs)
    in_python = [repr(records.summarize_outputs(outputs)) for outputs in cases]
    monkeypatch.setattr(records, "SMALL_OUTPUT_VALUES", 0)
    assert [repr(records.summarize_outputs(outputs)) for outputs in cases] == in_python
