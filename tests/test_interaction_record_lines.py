"""The interaction log builds a batch's scored records together (record_lines.py): every line is
byte for byte the per-request record's JSON, and a batch is queued in one operation."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from qscore.contracts import ScoreRequest, Timings
from qscore.contracts.messages import ReplyStatus, ScoreReply
from qscore.monitoring import InteractionLog, InteractionRecord
from qscore.monitoring.interaction_log import _line_of_entry, record_from_scored
from qscore.monitoring.record_lines import ScoredEntry, scored_lines
from qscore.scoring import ScoredItem, ScoringItem

INPUT_SHAPES: list[tuple[tuple[int, ...], Any]] = [
    ((1, 64), np.float32),
    ((3, 64), np.float32),
    ((1, 7), np.float64),
    ((1, 200), np.float16),  # overflows to inf at the larger scales
    ((2, 3000), np.float32),  # past the verbatim limit: statistics only
    ((4,), np.int64),
    ((1, 1), np.uint8),
]


def _outputs(kind: int, rows: int, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    exp = np.exp(rng.random((rows, 10)))
    probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    if kind == 0:  # digits: a distribution and a class output
        return {"probabilities": probabilities, "label": probabilities.argmax(1).reshape(rows, 1)}
    if kind == 1:  # some rows are not distributions (scaled, NaN): the second output is chosen or none
        if index % 3 == 0:
            probabilities = probabilities * 1.5
        if index % 5 == 0:
            probabilities[0, 0] = np.nan
        return {"scores": probabilities * 2, "probabilities": probabilities}
    if kind == 2:  # regression
        return {"value": rng.random((rows, 1)).astype(np.float32)}
    if kind == 3:
        return {"value": rng.random(rows)}
    if kind == 4:  # a large distribution: the per-request (numpy) way
        exp = np.exp(rng.random((rows, 300)))
        return {"probabilities": exp / exp.sum(axis=1, keepdims=True)}
    if kind == 5:  # ties
        tied = np.zeros((rows, 4))
        tied[:, 1] = tied[:, 2] = 0.5
        return {"p": tied, "k": rng.integers(0, 5, (rows, 2))}
    return {"label": rng.integers(0, 5, (rows, 1)).astype(np.int32), "embedding": rng.random((rows, 2))}


def _entry(
    index: int,
    shape: tuple[int, ...],
    dtype: Any,
    kind: int,
    class_output: str | None,
    rng: np.random.Generator,
) -> ScoredEntry:
    scale = float(rng.choice([1.0, 100.0, 1e-3, 1e6]))
    pixels = (rng.random(shape) * scale).astype(dtype)
    request = ScoreRequest.model_construct(model="m", inputs={}, version=None)
    arrays = {"x": pixels, "y": pixels[..., :3].copy()}
    item = ScoringItem(request_id=f"r{index}", request=request, arrays=arrays, received_at=1.7e9)
    scored = ScoredItem(
        item=item,
        outputs=_outputs(kind, shape[0], index, rng),
        model_version="3",
        batch_started_at=1.7e9 + float(rng.random()) * 1e5,
        inference_ms=2 if index % 6 == 0 else 1.5,  # an int as well: logged as a float either way
    )
    reply = None
    if index % 4:
        timings = Timings(queue_wait_ms=float(rng.random()), inference_ms=1.0)
        reply = ScoreReply(
            request_id=f"r{index}", status=ReplyStatus.OK, model="m", timings=timings, scored_by="w"
        )
    route = "canary" if index % 2 else "production"
    return ScoredEntry(scored, reply, route, None if index % 3 else "x", class_output)


def _per_request(entry: ScoredEntry) -> str:
    record = record_from_scored(
        entry.scored,
        reply=entry.reply,
        route=entry.route,
        scored_by=entry.scored_by,
        class_output=entry.class_output,
    )
    return record.model_dump_json() + "\n"


def test_batched_lines_are_the_per_request_records_byte_for_byte() -> None:
    rng = np.random.default_rng(3)
    with np.errstate(all="ignore"):
        for shape, dtype in INPUT_SHAPES:
            for kind in range(7):
                for class_output in (None, "label", "probabilities", "absent"):
                    entries = [_entry(index, shape, dtype, kind, class_output, rng) for index in range(6)]
                    built = scored_lines(entries, _line_of_entry)
                    assert [getattr(line, "line", line) for line in built] == [
                        _per_request(e) for e in entries
                    ]


def test_a_request_that_cannot_be_built_costs_only_its_own_line() -> None:
    rng = np.random.default_rng(4)
    entries = [_entry(index, (1, 64), np.float32, 0, None, rng) for index in range(1, 4)]
    broken = SimpleNamespace(timings=SimpleNamespace(), scored_by=None)  # no model_dump: fails either way
    entries[1] = ScoredEntry(entries[1].scored, broken, "production", None, None)  # type: ignore[arg-type]
    first, failed, last = scored_lines(entries, _line_of_entry)
    assert isinstance(failed, Exception)
    assert [first.line, last.line] == [_per_request(entries[0]), _per_request(entries[2])]  # type: ignore[union-attr]


async def test_a_reply_batch_is_queued_at_once_and_written_as_single_requests(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    entries = [_entry(index, (1, 64), np.float32, 0, None, rng) for index in range(1, 9)]
    scored, replies = [e.scored for e in entries], [e.reply or entries[1].reply for e in entries]
    routes = [e.route for e in entries]
    async with InteractionLog(tmp_path / "many.jsonl") as many, InteractionLog(tmp_path / "one.jsonl") as one:
        assert await many.log_scored_many(scored, replies, routes, scored_by="w2") == len(entries)
        for item, reply, route in zip(scored, replies, routes, strict=True):
            assert await one.log_scored(item, reply=reply, route=route, scored_by="w2")
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert many.written == len(entries)


async def test_a_reply_batch_past_the_queue_bound_is_dropped_and_counted(tmp_path: Path) -> None:
    stalled, release = threading.Event(), threading.Event()

    def stalled_record() -> InteractionRecord:
        stalled.set()
        release.wait(30)  # the writer is stuck here, like a hung disk
        return InteractionRecord(at=0.0, request_id="s", model="m", version="1")

    rng = np.random.default_rng(6)
    entries = [_entry(index, (1, 64), np.float32, 0, None, rng) for index in range(1, 9)]
    log = InteractionLog(tmp_path / "log.jsonl", max_pending=5)
    assert log.log_nowait(stalled_record) and stalled.wait(10)
    kept = await log.log_scored_many([e.scored for e in entries], None, [e.route for e in entries])
    release.set()
    await log.close()
    assert (kept, log.dropped, log.written) == (5, 3, 6)
