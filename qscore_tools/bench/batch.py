"""`qscore batch bench`: batch scoring throughput against the direct-Triton ceiling, in one run.

1. Start Triton (digits) and write an N-row digits Parquet file (the 450 labelled held-out
   rows of data/digits_test.npz repeated), streamed in row groups.
2. Direct-Triton ceiling: the benchmark's own gRPC load generator at rising concurrency with
   batches of the model's max_batch_size (the request size the direct engine sends).
3. `qscore batch score --engine direct` as a child process: rows/s (from its summary), peak
   RSS (os.wait4), accuracy against the labels, and CPU per row: the engine's own (its
   summary's `cpu_s`) and Triton's (server and backend stubs, psutil) over the same run. On a
   machine whose cores Triton and the engine share, the ratio to the ceiling follows these:
   the ceiling spends Triton's CPU plus its load generator's on a row, the engine run Triton's
   plus the engine's. Optionally again for other file sizes (RSS).
4. `--engine queue` with 1 and 2 worker processes (as `qscore demo` starts them) on the bus.
Figures go to a JSON file and a Markdown table on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qscore.batch.formats import numpy_column
from qscore.inference.testset import load_digits_test_set
from qscore_local.bus.launcher import LocalBus
from qscore_local.triton.launcher import LocalTriton
from qscore_local.workers import WorkerPool
from qscore_tools.bench.direct import CeilingSearch, find_ceiling, measure_direct
from qscore_tools.bench.metering import ProcessMeter

CLI = (sys.executable, "-c", "from qscore_cli import main; main()")
MODEL = "digits"
ROW_GROUP_ROWS = 65_536
DIRECT_CHUNK_ROWS = 16_384  # 64 requests of max_batch_size: enough to keep Triton busy between chunks


@dataclass(frozen=True)
class BatchBenchOptions:
    rows: int = 1_000_000
    engines: list[str] = field(default_factory=lambda: ["direct", "queue"])
    workers: list[int] = field(default_factory=lambda: [1, 2])
    ceiling_s: float = 10.0
    rss_rows: list[int] = field(default_factory=list)
    out: Path = Path("bench/results/batch.json")
    direct_in_flight: int = 4
    queue_in_flight: int = 64
    # Run the direct engine from another checkout (its root on PYTHONPATH): a before/after pair
    # gets the same ceiling measurements. None: this code.
    engine_code: Path | None = None


@dataclass
class EngineRun:
    engine: str
    rows: int
    workers: int
    rows_per_s: float
    elapsed_s: float
    peak_rss_mb: float
    accuracy: float
    chunk_rows: int
    stage_s: dict[str, float]
    cpu_us_per_row: float  # the engine process's own CPU (all its threads) over its run
    triton_cpu_us_per_row: float  # Triton's (server and backend stubs) over the same run


@dataclass(frozen=True)
class TritonCpu:
    """CPU-seconds of the Triton process and its children (the Python-backend stubs)."""

    pid: int

    def cpu_s(self) -> float:
        return ProcessMeter("triton", [self.pid]).cpu_s()


def write_digits_parquet(path: Path, rows: int) -> np.ndarray:
    """The held-out rows repeated to `rows`, written one row group at a time; returns the labels."""
    test_set = load_digits_test_set()
    repeats = -(-ROW_GROUP_ROWS // len(test_set))
    pixels = np.tile(test_set.pixels, (repeats, 1))
    labels = np.tile(test_set.labels, -(-rows // len(test_set)))[:rows]
    schema = pa.schema([("id", pa.int64()), ("pixels", pa.list_(pa.float32(), 64)), ("label", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP_ROWS):
            count = min(ROW_GROUP_ROWS, rows - start)
            offset = start % len(test_set)  # keep row i = held-out row i mod 450
            block = np.roll(pixels, -offset, axis=0)[:count]
            ids = np.arange(start, start + count)
            writer.write_table(
                pa.table(
                    {"id": ids, "pixels": numpy_column(block), "label": labels[start : start + count]},
                    schema=schema,
                )
            )
    return labels


async def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """Run `qscore ...` as a child; (exit status, its peak RSS in MB, the end of its stderr)."""
    return await asyncio.to_thread(_run_child, [*CLI, *args], {**os.environ, **(env or {})})


def _run_child(command: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        # wait4, not wait: it also returns the child's own resource usage (ru_maxrss, in KiB).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-2000:]
    return child.returncode, usage.ru_maxrss / 1024, tail


def accuracy(output: Path, labels: np.ndarray) -> float:
    parquet = pq.ParquetFile(output)
    correct = 0
    seen = 0
    for batch in parquet.iter_batches(columns=["id", "label"], batch_size=ROW_GROUP_ROWS):
        ids = np.asarray(batch.column("id"))
        correct += int((np.asarray(batch.column("label")) == labels[ids]).sum())
        seen += len(ids)
    assert seen == len(labels), f"{output}: {seen} rows, expected {len(labels)}"
    return correct / seen


async def score_once(
    source: Path,
    labels: np.ndarray,
    workdir: Path,
    *,
    engine: str,
    extra: list[str],
    env: dict[str, str] | None = None,
    workers: int = 0,
    triton_cpu: TritonCpu,
) -> EngineRun:
    tag = f"{engine}-{len(labels)}-{workers}w"
    output = workdir / f"{tag}.parquet"
    summary_path = workdir / f"{tag}.summary.json"
    args = [
        "batch",
        "score",
        str(source),
        "--model",
        MODEL,
        "-o",
        str(output),
        "--id-column",
        "id",
        "--engine",
        engine,
    ]
    args += [
        "--no-progress",
        "--summary-json",
        str(summary_path),
        "--registry",
        str(workdir / "registry.json"),
        *extra,
    ]
    triton_cpu_before = triton_cpu.cpu_s()
    code, rss_mb, stderr = await run_cli(args, env)
    triton_cpu_s = triton_cpu.cpu_s() - triton_cpu_before
    if code != 0:
        raise RuntimeError(f"qscore batch score ({tag}) exited {code}: {stderr}")
    summary = json.loads(summary_path.read_text())
    header = json.loads((workdir / f"{tag}.parquet.batch" / "manifest.jsonl").read_text().splitlines()[0])
    run = EngineRun(
        engine,
        len(labels),
        workers,
        summary["rows_per_s"],
        summary["elapsed_s"],
        round(rss_mb, 1),
        accuracy(output, labels),
        header["chunk_rows"],
        summary["stage_s"],
        round(1e6 * summary.get("cpu_s", 0.0) / len(labels), 2),
        round(1e6 * triton_cpu_s / len(labels), 2),
    )
    output.unlink()
    rate = f"{run.rows_per_s:,.0f} rows/s"
    cpu = f"CPU per row: engine {run.cpu_us_per_row:.2f} us, Triton {run.triton_cpu_us_per_row:.2f} us"
    print(f"  {tag}: {rate}, peak RSS {run.peak_rss_mb:.0f} MB, accuracy {run.accuracy:.4f}, {cpu}")
    return run


async def run_batch_bench(options: BatchBenchOptions) -> dict[str, Any]:
    workdir = options.out.parent / f"batch-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"digits-{options.rows}.parquet"
    labels = await asyncio.to_thread(write_digits_parquet, source, options.rows)
    print(f"wrote {source} ({source.stat().st_size / 1e6:.0f} MB)")
    results: dict[str, Any] = {"rows": options.rows, "runs": [], "started": time.time()}
    server = LocalTriton(models=[MODEL], log_path=workdir / "triton.log")
    async with server as triton:
        assert server.pid is not None
        url, triton_cpu = triton.grpc_url, TritonCpu(server.pid)
        if "direct" in options.engines:
            results.update(await _direct(options, source, labels, workdir, url, triton_cpu))
        if "queue" in options.engines:
            runs = await _queue(options, source, labels, workdir, url, triton_cpu)
            results["runs"] += [r.__dict__ for r in runs]
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2))
    source.unlink()
    print(markdown(results))
    return results


async def _direct(
    options: BatchBenchOptions,
    source: Path,
    labels: np.ndarray,
    workdir: Path,
    url: str,
    triton_cpu: TritonCpu,
) -> dict[str, Any]:
    ceiling_rows_per_s = 0.0
    ceiling_concurrency = ceiling_processes = 0
    ceiling_client_cpu = 0.0
    if options.ceiling_s > 0:  # 0 skips it (a peak-RSS run on a large file)
        search = CeilingSearch(levels=(4, 8, 16, 32, 64), patience=2)
        ceiling = await find_ceiling(
            url, MODEL, batch_size=256, warmup_s=1.0, duration_s=options.ceiling_s, search=search
        )
        ceiling_rows_per_s, ceiling_concurrency = ceiling.samples_per_s, ceiling.concurrency
        ceiling_processes = ceiling.processes
        best = next(p for p in ceiling.points if p.concurrency == ceiling.concurrency)
        ceiling_client_cpu = best.client_cpu_fraction
        print(
            f"  direct-Triton ceiling: {ceiling_rows_per_s:,.0f} rows/s (c={ceiling_concurrency}, "
            f"{ceiling_processes} load-generator process(es), "
            f"the busiest at {ceiling_client_cpu:.2f} of a core)"
        )
    extra = [
        "--triton-url",
        url,
        "--chunk-rows",
        str(DIRECT_CHUNK_ROWS),
        "--in-flight",
        str(options.direct_in_flight),
    ]
    env = None if options.engine_code is None else {"PYTHONPATH": str(options.engine_code.resolve())}
    run = await score_once(
        source, labels, workdir, engine="direct", extra=extra, env=env, triton_cpu=triton_cpu
    )
    after: dict[str, Any] = {}
    if ceiling_rows_per_s:
        after = await _ceiling_again(url, ceiling_concurrency, ceiling_processes, options, triton_cpu)
        after["ceiling_before_rows_per_s"] = ceiling_rows_per_s
        ceiling_rows_per_s = max(ceiling_rows_per_s, after["ceiling_after_rows_per_s"])
    rss = []
    for rows in options.rss_rows:
        other = workdir / f"digits-{rows}.parquet"
        other_labels = await asyncio.to_thread(write_digits_parquet, other, rows)
        other_run = await score_once(
            other, other_labels, workdir, engine="direct", extra=extra, triton_cpu=triton_cpu
        )
        rss.append(other_run.__dict__)
        other.unlink()
    return {
        "ceiling_rows_per_s": ceiling_rows_per_s,
        "ceiling_concurrency": ceiling_concurrency,
        "ceiling_processes": ceiling_processes,
        "ceiling_client_cpu_fraction": ceiling_client_cpu,
        **after,
        "direct_over_ceiling": run.rows_per_s / ceiling_rows_per_s if ceiling_rows_per_s else None,
        "runs": [run.__dict__],
        "rss_runs": rss,
    }


async def _ceiling_again(
    url: str, concurrency: int, processes: int, options: BatchBenchOptions, triton_cpu: TritonCpu
) -> dict[str, Any]:
    """The ceiling's best point measured again right after the engine: the machine is shared,
    so the ratio is taken to the higher of the two (the conservative one). Triton's CPU a row
    there is comparable with the engine run's."""
    warmup_s = 1.0
    triton_before = triton_cpu.cpu_s()
    point = await measure_direct(
        url,
        MODEL,
        batch_size=256,
        concurrency=concurrency,
        processes=processes,
        warmup_s=warmup_s,
        duration_s=options.ceiling_s,
    )
    triton_cpu_s = triton_cpu.cpu_s() - triton_before
    # Triton is idle while the load generator starts: its CPU is the warm-up's and the window's.
    rows = point.samples_per_s * (warmup_s + options.ceiling_s)
    triton_us = round(1e6 * triton_cpu_s / rows, 2) if rows else 0.0
    client_us = (
        round(1e6 * point.client_cpu_fraction / point.samples_per_s, 2) if point.samples_per_s else 0.0
    )
    print(
        f"  direct-Triton ceiling again after the engine: {point.samples_per_s:,.0f} rows/s "
        f"(c={concurrency}); CPU per row: load generator {client_us:.2f} us, Triton {triton_us:.2f} us"
    )
    return {
        "ceiling_after_rows_per_s": point.samples_per_s,
        "ceiling_client_cpu_us_per_row": client_us,
        "ceiling_triton_cpu_us_per_row": triton_us,
    }


async def _queue(
    options: BatchBenchOptions,
    source: Path,
    labels: np.ndarray,
    workdir: Path,
    url: str,
    triton_cpu: TritonCpu,
) -> list[EngineRun]:
    runs = []
    async with LocalBus(log_path=workdir / "bus.log") as bus:
        for count in options.workers:
            env = {
                "QSCORE_SERVICEBUS_CONNECTION": bus.connection_string,
                "QSCORE_TRITON_URL": url,
                "QSCORE_HEALTH_HOST": "127.0.0.1",
                "QSCORE_REGISTRY_PATH": str(workdir / "registry.json"),
            }
            pool = WorkerPool(count=count, env=env, log_dir=workdir / f"workers-{count}")
            await pool.start(timeout_s=120)
            try:
                extra = ["--connection", bus.connection_string, "--in-flight", str(options.queue_in_flight)]
                runs.append(
                    await score_once(
                        source,
                        labels,
                        workdir,
                        engine="queue",
                        extra=extra,
                        workers=count,
                        triton_cpu=triton_cpu,
                    )
                )
            finally:
                await pool.stop()
    return runs


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| engine | rows | workers | chunk rows | rows/s | peak RSS MB | accuracy "
        "| CPU us/row: engine, Triton |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"] + results.get("rss_runs", []):
        lines.append(
            f"| {run['engine']} | {run['rows']:,} | {run['workers'] or '-'} | {run['chunk_rows']:,} | "
            f"{run['rows_per_s']:,.0f} | {run['peak_rss_mb']:.0f} | {run['accuracy']:.4f} | "
            f"{run.get('cpu_us_per_row', 0):.2f}, {run.get('triton_cpu_us_per_row', 0):.2f} |"
        )
    if results.get("direct_over_ceiling"):
        direct = next(run for run in results["runs"] if run["engine"] == "direct")
        lines.append(
            f"\ndirect-Triton ceiling {results['ceiling_rows_per_s']:,.0f} rows/s{_before_after(results)}; "
            "direct engine / ceiling "
            f"= {results['direct_over_ceiling']:.2f} (goal 0.8), peak RSS {direct['peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)


def _before_after(results: dict[str, Any]) -> str:
    if "ceiling_after_rows_per_s" not in results:
        return ""
    before, after = results["ceiling_before_rows_per_s"], results["ceiling_after_rows_per_s"]
    return f" (the higher of {before:,.0f} before the engine and {after:,.0f} after)"
