"""Unit tests of the benchmark's pieces (no servers): load shapes, merging, goals, results files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qscore_local.triton.repository import DEFAULT_REPO, derive_cpu_repository, read_config
from qscore_tools.bench.children import Window, split_evenly
from qscore_tools.bench.direct import Ceiling
from qscore_tools.bench.goals import evaluate
from qscore_tools.bench.latency import cdf, summarize
from qscore_tools.bench.load import closed_loop, open_loop
from qscore_tools.bench.machine import machine_facts
from qscore_tools.bench.metering import ProcessCost
from qscore_tools.bench.network import DrainPoint, LatencyComparison, NetworkResults
from qscore_tools.bench.points import LoadPoint, merge_samples
from qscore_tools.bench.queue_path import QueueMeasurement
from qscore_tools.bench.repo_variants import without_dynamic_batching
from qscore_tools.bench.report import write_results
from qscore_tools.bench.runner import BatchingComparison, BenchRun, ModelResults
from qscore_tools.bench.settings import BenchSettings


def test_summary_percentiles_and_cdf() -> None:
    summary = summarize([float(v) for v in range(1, 101)])
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == 100.0
    points = cdf([1.0, 2.0, 3.0, 4.0])
    assert points[-1] == (4.0, 1.0)
    assert summarize([]).count == 0


async def test_closed_loop_counts_completions_and_errors() -> None:
    calls = 0

    async def operation() -> dict[str, float] | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        if calls % 5 == 0:
            raise RuntimeError("every fifth fails")
        return {"inference_ms": 1.0}

    sample = await closed_loop(operation, concurrency=4, start_at=time.time() + 0.05, duration_s=0.3)
    assert sample.completed > 0
    assert sample.errors > 0
    assert sample.first_error.startswith("RuntimeError")
    assert len(sample.latencies_ms) == sample.completed
    assert all(latency > 0 for latency in sample.latencies_ms)
    assert sample.details[0] == {"inference_ms": 1.0}


async def test_open_loop_sends_on_a_fixed_schedule() -> None:
    async def operation() -> None:
        await asyncio.sleep(0.002)

    sample = await open_loop(operation, rate_per_s=200, start_at=time.time() + 0.05, duration_s=0.5)
    assert 0 < sample.completed <= 200 * 0.5 + 1
    assert sample.errors == 0


def test_merge_samples_adds_processes_up() -> None:
    child = {"window_s": 2.0, "completed": 100, "errors": 1, "dropped": 0, "latencies_ms": [1.0, 2.0]}
    child |= {"details": [], "client_cpu_s": 1.0, "first_error": ""}
    point = merge_samples(
        [child, child], path="direct", model="m", mode="closed", concurrency=8, batch_size=4
    )
    assert point.processes == 2
    assert point.requests_per_s == pytest.approx(100.0)
    assert point.samples_per_s == pytest.approx(400.0)
    assert point.errors == 2
    assert point.client_cpu_fraction == pytest.approx(0.5)
    assert LoadPoint.from_dict(point.as_dict()) == point


def test_split_evenly_and_window() -> None:
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 4) == [1, 1]
    window = Window.after_warmup(1.0, 5.0)
    assert window.end_at - window.start_at == 5.0
    assert "--start-at" in window.child_args()


def test_repo_variant_drops_dynamic_batching(tmp_path: Path) -> None:
    variant = without_dynamic_batching(DEFAULT_REPO, tmp_path / "repo", ["digits"])
    config = read_config(variant / "digits" / "config.pbtxt")
    assert not config.HasField("dynamic_batching")
    assert config.max_batch_size == read_config(DEFAULT_REPO / "digits" / "config.pbtxt").max_batch_size
    assert (variant / "digits" / "1").is_symlink()
    assert derive_cpu_repository(variant, tmp_path / "derived") == ["digits"]


def test_settings_validate_and_override() -> None:
    quick = BenchSettings.quick_settings()
    assert quick.quick and quick.duration_s < BenchSettings().duration_s
    assert quick.with_overrides(workers=None, duration_s=3.0).duration_s == 3.0
    with pytest.raises(ValueError, match="workers"):
        BenchSettings(workers=0)


def _point(path: str, model: str, samples: float, *, mode: str = "closed", offered: float = 0.0) -> LoadPoint:
    latencies = [2.0, 3.0, 4.0, 10.0]
    return LoadPoint(
        path=path,
        model=model,
        mode=mode,
        concurrency=16,
        processes=1,
        batch_size=1,
        offered_per_s=offered,
        samples_per_s=samples,
        requests_per_s=samples,
        completed=int(samples),
        errors=0,
        dropped=0,
        latency=summarize(latencies),
        client_cpu_fraction=0.3,
        stages_ms={"queue_wait_ms": 1.0, "batch_wait_ms": 1.0, "inference_ms": 1.0, "reply_ms": 1.0},
        latency_cdf=cdf(latencies),
    )


def _measurement(model: str, samples: float, **kwargs: object) -> QueueMeasurement:
    cost = ProcessCost("worker", 1, 1.0, 1.0, int(samples), 90.0, 1000 / samples, samples)
    return QueueMeasurement(_point("queue", model, samples, **kwargs), {"worker": cost}, label="x")  # type: ignore[arg-type]


def synthetic_run(tmp_path: Path) -> BenchRun:
    settings = BenchSettings.quick_settings(output_dir=tmp_path)
    run = BenchRun(settings=settings, machine=machine_facts() | {"usable_cores": 2}, started_at=time.time())
    for model, rate in (("digits", 4000.0), ("bench_mlp", 900.0)):
        results = ModelResults(model)
        ceiling_point = _point("direct", model, 1000.0)
        results.ceiling = Ceiling(model, 64, 1000.0, 16, 1, [ceiling_point])
        results.queue_closed = [_measurement(model, rate)]
        results.queue_open = [_measurement(model, rate / 2, mode="open", offered=rate / 2)]
        results.direct_at_half_peak = _point("direct", model, rate / 2, mode="open", offered=rate / 2)
        run.models[model] = results
    on = run.models["digits"].queue_closed[0]
    run.batching = BatchingComparison("digits", 16, on, _measurement("digits", 400.0))
    run.finished_at = time.time()
    return run


def test_goals_on_a_synthetic_run(tmp_path: Path) -> None:
    goals = {goal.name: goal for goal in evaluate(synthetic_run(tmp_path))}
    ratio = goals["bench_mlp queue path / direct ceiling"]
    assert ratio.measured == pytest.approx(0.9) and ratio.met
    assert goals["batching gain on digits (on / batch of one)"].measured == pytest.approx(10.0)
    assert goals["worker peak RSS (MB)"].met
    assert goals["worker messages/s per core on digits"].met


def _empty_measurement(model: str, **kwargs: object) -> QueueMeasurement:
    """A point that completed nothing (what a stalled queue path measures)."""
    point = replace(_point("queue", model, 0.0, **kwargs), latency=summarize([]), stages_ms={})  # type: ignore[arg-type]
    cost = ProcessCost("worker", 1, 0.03, 1.0, 0, 90.0, 0.0, 0.0)
    return QueueMeasurement(point, {"worker": cost}, label="open 50% of peak", backlog_at_start=20_000)


def test_goals_without_samples_are_not_measured_never_met(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    run.models["bench_mlp"].queue_open = [_empty_measurement("bench_mlp", mode="open", offered=450.0)]
    assert run.batching is not None
    run.batching.off = _empty_measurement("digits")
    goals = {goal.name: goal for goal in evaluate(run)}
    for name in ("bench_mlp p99 at half peak (ms)", "batching gain on digits (on / batch of one)"):
        assert goals[name].measured is None and goals[name].met is None, name
        assert "completed no requests" in goals[name].bottleneck
    assert goals["digits p99 at half peak (ms)"].measured is not None
    files, _ = write_results(run, tmp_path)
    summary = files.markdown_path.read_text()
    assert "| bench_mlp p99 at half peak (ms) |" in summary and "not measured" in summary
    assert "20,000 earlier requests still queued at start" in summary


def test_results_files(tmp_path: Path) -> None:
    files, document = write_results(synthetic_run(tmp_path), tmp_path)
    stored = json.loads(files.json_path.read_text())
    assert stored["worker"]["messages_per_s_per_replica"] == pytest.approx(4000.0)
    assert stored["models"]["bench_mlp"]["queue_to_ceiling_ratio"] == pytest.approx(0.9)
    assert stored == json.loads(json.dumps(document))
    assert "## Goals" in files.markdown_path.read_text()
    assert [path.suffix for path in files.plots] == [".png", ".png"]
    assert all(path.stat().st_size > 1000 for path in files.plots)


def test_cli_rejects_an_unknown_model_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from qscore_cli import main; main()", "bench", "--model", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown model(s) nope; triton_repo/ has bench_mlp, digit_images, "
        "digit_images_classifier, digit_images_preprocess, digits"
    ]


def test_cli_rejects_a_negative_bus_latency_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from qscore_cli import main; main()", "bench", "--bus-latency-ms", "-5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: bus latency must be >= 0 ms"]


def test_py_spy_raw_output_summary(tmp_path: Path) -> None:
    from qscore_tools.bench.profiling import summarize_collapsed

    raw = "main (a.py:1);loop (a.py:9);send (b.py:3) 30\nmain (a.py:1);loop (a.py:10);decode (c.py:7) 10\n"
    summary = summarize_collapsed(raw, role="worker", label="digits", raw_path=tmp_path / "raw.txt")
    assert summary.samples == 40
    assert summary.top_self[0] == ("send (b.py)", 0.75)
    assert dict(summary.top_inclusive)["loop (a.py)"] == 1.0


def _drain(rows: int, latency_ms: float, messages_per_s: float) -> DrainPoint:
    return DrainPoint(
        model="digits",
        rows=rows,
        latency_ms=latency_ms,
        messages=300,
        completed=300,
        errors=0,
        window_s=1.0,
        messages_per_s=messages_per_s,
        samples_per_s=messages_per_s * rows,
        worker_cores=0.4,
        bus_cores=0.2,
        body="binary",
    )


def test_network_latency_goals_and_report(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    peak = run.models["digits"].queue_closed[0]
    network = NetworkResults(bus_latency_ms=5.0)
    network.points.append(LatencyComparison("digits", peak.label, peak, _measurement("digits", 3000.0)))
    network.drains += [_drain(1, 0.0, 1000.0), _drain(1, 5.0, 950.0), _drain(1, 25.0, 500.0)]
    network.drains += [_drain(128, 0.0, 400.0)]  # no 128-row drain at 5 ms: not measured
    run.network = network
    goals = {goal.name: goal for goal in evaluate(run)}
    five = goals["single-row drain throughput, bus at 5 ms one way / at 0"]
    assert five.measured == pytest.approx(0.95) and five.met
    slow = goals["single-row drain throughput, bus at 25 ms one way / at 0"]
    assert slow.measured == pytest.approx(0.5) and slow.met is False
    assert "waits on broker round trips" in slow.bottleneck
    many = goals["128-row (binary body) drain throughput, bus at 5 ms one way / at 0"]
    assert many.measured is None and many.met is None
    # The 128-row drain at 0 against digits' direct ceiling (1,000 samples/s): 400 x 128 / 1,000.
    ceiling = goals["128-row (binary body) drain samples/s at 0 / direct-Triton ceiling (digits)"]
    assert ceiling.measured == pytest.approx(51.2) and ceiling.met
    files, document = write_results(run, tmp_path)
    assert document["network"]["points"][0]["throughput_ratio"] == pytest.approx(0.75)
    summary = files.markdown_path.read_text()
    assert "## The queue path with the bus 5 ms away" in summary
    assert "| digits | x | 4,000 | 3,000 | 0.75 |" in summary
    assert "| 1 | 25 | 300 | 500 | 500 | 0.50 |" in summary
    # Issue 23's table: its eight goals in its order, a row for each even when not measured here.
    issue = summary.split("## Issue 23's goals")[1].split("\n## ")[0]
    rows = [line for line in issue.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| single-row drain throughput, bus at 5 ms one way / at 0",
        "| single-row drain throughput, bus at 25 ms one way / at 0",
        "| 128-row (binary body) drain throughput, bus at 5 ms one way / at 0",
        "| 128-row (binary body) drain samples/s at 0 / direct-Triton ceiling (digits)",
        "| bytes on the wire per sample, 128-row binary body / raw tensor bytes",
        "| worker messages per CPU-second, single-row, all middleware on",
        "| digits p99 at half peak (ms)",
        "| worker cold start to first reply (s)",
    ]
    with pytest.raises(ValueError, match="latency"):
        BenchSettings(bus_latency_ms=-1)


def test_wire_bytes_of_a_128_row_binary_request_are_near_its_raw_bytes() -> None:
    from qscore_tools.bench.goals import WIRE_BYTES_TARGET
    from qscore_tools.bench.wire_bytes import wire_bytes

    figures = wire_bytes()
    assert figures.raw_bytes == 128 * 64 * 4
    assert figures.ratio("binary") <= WIRE_BYTES_TARGET
    assert figures.body_bytes["binary"] < figures.body_bytes["json_b64"]
    assert figures.message_bytes["binary"] > figures.body_bytes["binary"]  # its properties count too
