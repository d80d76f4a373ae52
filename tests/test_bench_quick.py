"""The benchmark against the real parts: direct Triton, and `qscore bench --quick` end to end.

No timing thresholds: these assert that it ran and produced sane, non-zero figures and files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qscore_local.triton.launcher import TritonEndpoints
from qscore_tools.bench.direct import CeilingSearch, find_ceiling, measure_direct

QSCORE = [sys.executable, "-c", "from qscore_cli import main; main()"]


async def test_direct_ceiling_against_real_triton(triton: TritonEndpoints) -> None:
    ceiling = await find_ceiling(
        triton.grpc_url,
        "digits",
        batch_size=8,
        warmup_s=0.2,
        duration_s=0.5,
        search=CeilingSearch(levels=(1, 2)),
    )
    assert ceiling.samples_per_s > 0
    assert ceiling.concurrency in (1, 2)
    assert all(point.errors == 0 and point.latency.p99_ms > 0 for point in ceiling.points)


async def test_direct_open_loop_against_real_triton(triton: TritonEndpoints) -> None:
    point = await measure_direct(
        triton.grpc_url, "bench_mlp", batch_size=1, rate_per_s=50, processes=2, warmup_s=0.2, duration_s=0.5
    )
    assert point.mode == "open" and point.processes == 2
    assert point.completed > 0 and point.errors == 0
    assert point.offered_per_s == pytest.approx(50)


def _load_points(node: object, where: str = "") -> list[tuple[str, dict]]:
    """Every load point in a bench document (a dict with completed/errors/first_error), by path."""
    if isinstance(node, dict):
        if {"completed", "errors", "first_error"} <= node.keys():
            return [(where, node)]
        return [point for key, value in node.items() for point in _load_points(value, f"{where}.{key}")]
    if isinstance(node, list):
        return [
            point for index, value in enumerate(node) for point in _load_points(value, f"{where}[{index}]")
        ]
    return []


def _check_correctness(document: dict) -> None:
    """The bench's correctness figures: every request of every point got its reply (a lost or
    unanswered request is an error: each caller awaits its reply), none failed, and the closed
    loops sent everything they meant to (`dropped` counts sends an open loop skipped)."""
    points = _load_points(document)
    assert len(points) >= 4 * len(document["models"]), [where for where, _ in points]
    for where, point in points:
        assert point["errors"] == 0 and point["first_error"] == "", (where, point["first_error"])
        assert point["latency"]["count"] == point["completed"], where
        if point.get("mode") == "closed":
            assert point["dropped"] == 0, where
    for name, model in document["models"].items():
        # (An open-loop point of the quick form may complete nothing in its short window on a
        # loaded machine; the peak, a closed loop, always completes some.)
        assert model["queue_peak"]["completed"] > 0, name


def _check_results(output: Path) -> dict:
    (json_path,) = output.glob("*.json")
    document = json.loads(json_path.read_text())
    _check_correctness(document)
    assert json_path.with_suffix(".md").is_file()
    assert sorted(p.name.split("-", 1)[1] for p in output.glob("*.png")) == [
        "items-per-message.png",
        "latency-cdf.png",
        "throughput.png",
    ]
    assert document["machine"]["logical_cores"] >= 1 and document["machine"]["packages"]["tritonclient"]
    for name, model in document["models"].items():
        assert model["ceiling"]["samples_per_s"] > 0, name
        peak = model["queue_peak"]
        assert peak["samples_per_s"] > 0 and peak["errors"] == 0, name
        assert 0 < peak["latency"]["p50_ms"] <= peak["latency"]["p99_ms"], name
        assert set(peak["stages_ms"]) == {"queue_wait_ms", "batch_wait_ms", "inference_ms", "reply_ms"}
        assert peak["costs"]["worker"]["cpu_s"] > 0 and peak["costs"]["worker"]["peak_rss_mb"] > 0
        assert peak["costs"]["bus"]["cpu_s"] > 0
        assert model["queue_open"] and model["direct_at_half_peak"]["completed"] > 0
    assert document["worker"]["messages_per_s_per_replica"] > 0
    if "digits" in document["models"]:
        cold = document["cold_start"]
        assert 0 < cold["ready_median_s"] <= cold["first_reply_median_s"]
    assert document["goals"] and all(goal["measured"] is not None for goal in document["goals"])
    if "digits" in document["models"]:  # issue 16's phases
        throughput = document["throughput"]
        assert all(point["samples_per_s"] > 0 for point in throughput["sweep"].values())
        assert throughput["coalesce_gain"] and throughput["lanes"]["high_mixed"]["samples_per_s"] > 0
    return document


def test_bench_quick_end_to_end(tmp_path: Path) -> None:
    """What CI runs: the short form, through the CLI, with the real Triton, bus and worker."""
    result = subprocess.run(
        [*QSCORE, "bench", "--quick", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = _check_results(tmp_path)
    # Batch-of-one may complete nothing inside a short window when the queue path is slow.
    assert document["batching"]["off"]["errors"] == 0 and document["batching"]["on"]["samples_per_s"] > 0
    assert "goals" in result.stdout
    # Issue 23: one queue-path point again with the bus 5 ms away, and the drains at 0, 5 and 25 ms.
    network = document["network"]
    assert network["bus_latency_ms"] == 5
    (point,) = network["points"]
    assert point["at_delay"]["samples_per_s"] > 0 and point["at_delay"]["errors"] == 0
    assert point["at_delay"]["costs"]["bus"]["cpu_s"] > 0
    drains = {(drain["rows"], drain["latency_ms"]): drain for drain in network["drains"]}
    assert set(drains) == {(1, 0), (1, 5), (1, 25), (128, 0), (128, 5)}
    assert all(d["completed"] == d["messages"] and d["messages_per_s"] > 0 for d in drains.values())
    assert {d["body"] for d in drains.values()} == {"binary"}  # the producer's default body
    summary = next(tmp_path.glob("*.md")).read_text()
    assert "## The queue path with the bus 5 ms away" in summary
    # Issue 23's goal table: exactly its eight rows, each with a figure (or why not).
    issue = summary.split("## Issue 23's goals")[1].split("\n## ")[0]
    rows = [line for line in issue.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 8, issue
    keys = [goal["key"] for goal in document["goals"] if goal["key"]]
    assert len(keys) == len(set(keys)) == 8
    ceiling = next(goal for goal in document["goals"] if goal["key"] == "drain_rows_ceiling")
    assert "binary body" in ceiling["name"] and ceiling["measured"] > 0
    assert document["worker_cpu_all_middleware"]["messages_per_cpu_s"] > 0


@pytest.mark.slow
def test_bench_full_run(tmp_path: Path) -> None:
    """The full benchmark (tens of minutes); the lead runs it on a quiet machine."""
    result = subprocess.run(
        [*QSCORE, "bench", "--output", str(tmp_path)], capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(tmp_path)
