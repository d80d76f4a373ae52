"""Demo summary arithmetic and rendering, from hand-made outcomes (no stack needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from qscore.contracts import ErrorCode, ReplyError, ReplyStatus, ScoreReply, Tensor, Timings
from qscore.producer import OutcomeKind, ProducerStats, ReplyOutcome
from qscore_local.demo import Percentiles, SummaryBuilder, batch_size_distribution
from qscore_local.demo.render import batch_size_buckets, render_summary


def _batch(size: str, count: str) -> dict[str, object]:
    return {"batch_size": size, "compute_infer": {"count": count}}


TRITON_STATISTICS = {
    "model_stats": [
        {
            "name": "digits",
            "version": "2",
            "batch_stats": [
                {"batch_size": "1", "compute_infer": {"count": "3", "ns": "100"}},
                {"batch_size": "64", "compute_infer": {"count": "2", "ns": "900"}},
            ],
        },
        {
            "name": "digits",
            "version": "1",
            "batch_stats": [{"batch_size": "1", "compute_infer": {"count": "1"}}],
        },
        {
            "name": "bench_mlp",
            "version": "1",
            "batch_stats": [{"batch_size": "8", "compute_infer": {"count": "9"}}],
        },
    ]
}


def _ok(request_id: str, label: int, total_ms: float) -> ReplyOutcome:
    reply = ScoreReply(
        request_id=request_id,
        status=ReplyStatus.OK,
        model="digits",
        model_version="2",
        outputs={"label": Tensor.from_numpy(np.array([[label]], dtype=np.int64))},
        timings=Timings(queue_wait_ms=1, batch_wait_ms=2, inference_ms=3, total_ms=total_ms),
    )
    return ReplyOutcome(request_id, OutcomeKind.REPLIED, 0.0, total_ms / 1000 + 0.01, reply)


def test_batch_size_distribution_sums_versions_of_one_model() -> None:
    assert batch_size_distribution(TRITON_STATISTICS, "digits") == {1: 4, 64: 2}
    assert batch_size_distribution({}, "digits") == {}


def test_batch_size_buckets_group_many_sizes_by_powers_of_two() -> None:
    assert batch_size_buckets({1: 2, 256: 3}) == [("1", 2, 2), ("256", 3, 768)]
    many = {size: 1 for size in range(1, 20)}
    labels = [label for label, _, _ in batch_size_buckets(many)]
    assert labels == ["1", "2", "3-4", "5-8", "9-16", "17-32"]
    assert sum(rows for _, _, rows in batch_size_buckets(many)) == sum(range(1, 20))


def test_summary_counts_accuracy_latency_and_errors(tmp_path: Path) -> None:
    labels = {f"r{i}": np.array([i % 10]) for i in range(5)}
    builder = SummaryBuilder(dict(labels), class_output="label")  # the config names it
    builder.add(_ok("r0", 0, 10))
    builder.add(_ok("r1", 1, 20))
    builder.add(_ok("r2", 9, 30))  # wrong label
    error = ScoreReply(
        request_id="r3",
        status=ReplyStatus.ERROR,
        model="digits",
        error=ReplyError(code=ErrorCode.EXPIRED, message="late"),
    )
    builder.add(ReplyOutcome("r3", OutcomeKind.REPLIED, 0.0, 0.5, error))
    builder.add(ReplyOutcome("r4", OutcomeKind.TIMED_OUT, 0.0, 60.0))
    summary = builder.build(
        requests=5,
        stats=ProducerStats(sent=5, replied=4, timed_out=1, duplicates=2),
        elapsed_s=2.0,
        dead_lettered=0,
        triton_batch_sizes={1: 3},
        workers=1,
        run_dir=tmp_path,
    )
    assert (summary.replies, summary.ok, summary.timed_out, summary.duplicates) == (4, 3, 1, 2)
    assert summary.errors == {"expired": 1}
    assert summary.accuracy == 2 / 3 and summary.scored_rows == 3
    assert summary.throughput_rps == 2.0
    assert summary.latency_ms["total"] == Percentiles.of([10, 20, 30])
    assert summary.latency_ms["total"].p50 == 20
    assert not summary.all_answered
    summary.write_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["triton_batch_sizes"] == {"1": 3}
    console = Console(record=True, width=120)
    render_summary(summary, console)
    text = console.export_text()
    assert "accuracy vs labels" in text and "NOT every request was answered" in text
    assert "expired 1" in text
