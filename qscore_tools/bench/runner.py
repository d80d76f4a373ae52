"""One benchmark run: ceiling, queue path (closed and open loop), batching on vs off, costs.

Everything runs in one process tree on one machine, in one go, so the ratios compare like
with like. The local bus is started once; Triton and the workers restart per configuration.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from qscore_tools.bench.cold_start import ColdStart, measure_cold_start
from qscore_tools.bench.direct import Ceiling, CeilingSearch, find_ceiling, measure_direct
from qscore_tools.bench.machine import machine_facts
from qscore_tools.bench.network import NetworkResults, measure_network_latency, phase_latencies
from qscore_tools.bench.points import LoadPoint
from qscore_tools.bench.profiling import Profiler, ProfileSummary
from qscore_tools.bench.queue_path import QueueMeasurement, measure_queue, wait_for_empty_queue
from qscore_tools.bench.settings import BenchSettings, results_stamp
from qscore_tools.bench.stack import BenchStack, StackConfig
from qscore_tools.bench.throughput import ThroughputResults, measure_throughput


class ProgressSink(Protocol):
    """Where a run reports what it is doing (the CLI shows it as a Rich progress bar)."""

    def phase(self, description: str) -> None: ...

    def point(self, text: str) -> None: ...


class SilentProgress:
    def phase(self, description: str) -> None:
        del description

    def point(self, text: str) -> None:
        del text


@dataclass
class ModelResults:
    """Everything measured for one model with batching on."""

    model: str
    ceiling: Ceiling | None = None
    queue_closed: list[QueueMeasurement] = field(default_factory=list)
    queue_open: list[QueueMeasurement] = field(default_factory=list)
    direct_at_half_peak: LoadPoint | None = None

    @property
    def queue_peak(self) -> QueueMeasurement | None:
        return max(self.queue_closed, key=lambda m: m.point.samples_per_s, default=None)


@dataclass
class BatchingComparison:
    """The same closed-loop load with batching on (worker + Triton) and off (batch of one)."""

    model: str
    concurrency: int
    on: QueueMeasurement
    off: QueueMeasurement

    @property
    def gain(self) -> float:
        off = self.off.point.samples_per_s
        return self.on.point.samples_per_s / off if off > 0 else 0.0


@dataclass
class BenchRun:
    settings: BenchSettings
    machine: dict[str, Any]
    started_at: float
    finished_at: float = 0.0
    models: dict[str, ModelResults] = field(default_factory=dict)
    batching: BatchingComparison | None = None
    cold_start: ColdStart | None = None
    throughput: ThroughputResults | None = None
    network: NetworkResults | None = None  # the queue path with the bus at network distance
    worker_cpu: dict[str, float] | None = None  # per message, every middleware on (issue 23)
    profiler: Profiler | None = None

    @property
    def profiles(self) -> list[ProfileSummary]:
        return self.profiler.summaries if self.profiler is not None else []


def total_phases(settings: BenchSettings) -> int:
    """Phases the progress bar counts: 4 per model, the bus, the stack, cold start, worker CPU per
    message, batching off,
    issue 16's three (items per message, coalescing, lanes) and one per bus latency (issue 23)."""
    cold_start = 2 if "digits" in settings.models else 0  # and the worker CPU per message
    throughput = 3 if settings.throughput_involved() else 0
    network = len(phase_latencies(settings))
    batching = 1 if settings.batching_involved() else 0
    return 4 * len(settings.models) + 2 + cold_start + throughput + network + batching


def describe(point: LoadPoint, *, backlog_at_start: int | None = 0) -> str:
    load = f"c={point.concurrency}" if point.mode == "closed" else f"{point.offered_per_s:,.0f}/s offered"
    text = (
        f"{point.path} {point.model} {load}: {point.samples_per_s:,.0f} samples/s, "
        f"p99 {point.latency.p99_ms:.1f} ms, errors {point.errors}"
    )
    if backlog_at_start:
        text += f"; WARNING {backlog_at_start:,} earlier requests still queued at its start"
    elif backlog_at_start is None:
        text += "; queue backlog unknown (bus counts unavailable)"
    return text


def describe_queue(measurement: QueueMeasurement) -> str:
    return describe(measurement.point, backlog_at_start=measurement.backlog_at_start)


@contextlib.asynccontextmanager
async def local_bus() -> AsyncIterator[tuple[str, int | None]]:
    """The local AMQP endpoint for the whole run: (connection string, pid)."""
    from qscore_local.bus.launcher import LocalBus

    bus = LocalBus()
    async with bus as endpoint:
        yield endpoint.connection_string, getattr(bus, "pid", None)


async def measure_direct_ceiling(
    stack: BenchStack, results: ModelResults, settings: BenchSettings, progress: ProgressSink
) -> None:
    progress.phase(f"{results.model}: direct-Triton ceiling")
    results.ceiling = await find_ceiling(
        stack.triton_url,
        results.model,
        batch_size=settings.max_batch_size,
        warmup_s=settings.warmup_s,
        duration_s=settings.duration_s,
        search=CeilingSearch(levels=settings.direct_levels),
        on_point=lambda point: progress.point(describe(point)),
    )


async def measure_queue_closed(
    stack: BenchStack, results: ModelResults, run: BenchRun, progress: ProgressSink
) -> None:
    """Raise in-flight requests level by level until samples/s stops growing (as for the ceiling)."""
    settings = run.settings
    search = CeilingSearch()
    progress.phase(f"{results.model}: queue path, closed loop")
    best, stale = 0.0, 0
    for concurrency in settings.queue_levels:
        measurement = await measure_queue(
            stack,
            results.model,
            concurrency=concurrency,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"closed c={concurrency}",
            profiler=run.profiler,
        )
        results.queue_closed.append(measurement)
        progress.point(describe_queue(measurement))
        if measurement.point.samples_per_s > best * (1 + search.growth_threshold):
            best, stale = measurement.point.samples_per_s, 0
        else:
            stale += 1
            if stale >= search.patience:
                return


async def measure_queue_open(
    stack: BenchStack, results: ModelResults, settings: BenchSettings, progress: ProgressSink
) -> None:
    progress.phase(f"{results.model}: queue path, open loop")
    peak = results.queue_peak
    if peak is None or peak.point.samples_per_s <= 0:
        return
    for fraction in settings.offered_fractions:
        measurement = await measure_queue(
            stack,
            results.model,
            rate_per_s=peak.point.samples_per_s * fraction,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"open {fraction:.0%} of peak",
        )
        results.queue_open.append(measurement)
        progress.point(describe_queue(measurement))


async def measure_direct_at_half_peak(
    stack: BenchStack, results: ModelResults, settings: BenchSettings, progress: ProgressSink
) -> None:
    """Direct Triton, one row per request, at half the queue path's peak: the latency reference."""
    progress.phase(f"{results.model}: direct Triton at half the queue peak")
    peak = results.queue_peak
    if peak is None or peak.point.samples_per_s <= 0:
        return
    results.direct_at_half_peak = await measure_direct(
        stack.triton_url,
        results.model,
        batch_size=1,
        rate_per_s=peak.point.samples_per_s / 2,
        warmup_s=settings.warmup_s,
        duration_s=settings.duration_s,
    )
    progress.point(describe(results.direct_at_half_peak))


def stack_config(settings: BenchSettings, *, batching: bool) -> StackConfig:
    return StackConfig(
        models=settings.models,
        workers=settings.workers,
        max_batch_size=settings.max_batch_size if batching else 1,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        dynamic_batching=batching,
        log_dir=settings.output_dir / "logs" if settings.keep_logs else None,
    )


async def compare_batching(
    run: BenchRun, connection: str, bus_pid: int | None, progress: ProgressSink
) -> None:
    """Batching off (worker batch of one, no Triton dynamic batching) at the peak's concurrency."""
    settings = run.settings
    model = settings.batching_model
    on = run.models[model].queue_peak
    if on is None:
        return
    progress.phase(f"{model}: batching off (batch of one), c={on.point.concurrency}")
    config = stack_config(settings, batching=False)
    async with BenchStack(config, bus_connection=connection, bus_pid=bus_pid) as stack:
        off = await measure_queue(
            stack,
            model,
            concurrency=on.point.concurrency,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"batching off c={on.point.concurrency}",
        )
    progress.point(describe_queue(off))
    run.batching = BatchingComparison(model=model, concurrency=on.point.concurrency, on=on, off=off)


async def measure_worker_cold_start(
    stack: BenchStack, connection: str, settings: BenchSettings, progress: ProgressSink
) -> ColdStart | None:
    """Scale from zero against the same Triton: the stack's own workers stop first."""
    if "digits" not in settings.models:
        return None
    progress.phase("worker cold start (scale from zero)")
    await wait_for_empty_queue(connection, "scoring-requests")
    await stack.stop_workers()
    return await measure_cold_start(
        connection=connection, triton_url=stack.triton_url, trials=1 if settings.quick else 3
    )


WORKER_CPU_MESSAGES = 3000  # single-row requests the all-middleware worker drains (300 quick)


async def measure_worker_cpu(
    stack: BenchStack, connection: str, settings: BenchSettings, progress: ProgressSink
) -> dict[str, float] | None:
    """Worker CPU per message with every middleware on (spans, metrics, jobs, interaction log,
    shadow scoring's check; qscore_tools/bench/per_message_cpu.py), one fresh worker against the
    run's bus and Triton; the stack's own workers stay stopped."""
    if "digits" not in settings.models:
        return None
    from qscore_tools.bench.per_message_cpu import measure_worker_cpu_per_message

    progress.phase("worker CPU per message, all middleware on")
    await wait_for_empty_queue(connection, "scoring-requests")
    await stack.stop_workers()
    messages = WORKER_CPU_MESSAGES // 10 if settings.quick else WORKER_CPU_MESSAGES
    return await measure_worker_cpu_per_message(connection, stack.triton_url, messages)


async def run_bench(settings: BenchSettings, progress: ProgressSink | None = None) -> BenchRun:
    """Measure everything `settings` asks for; the caller writes the results (qscore_tools.bench.report)."""
    progress = progress or SilentProgress()
    run = BenchRun(settings=settings, machine=machine_facts(), started_at=time.time())
    if settings.profile:
        run.profiler = Profiler(settings.output_dir / f"{results_stamp(run.started_at)}-profiles")
    progress.phase("starting the local bus")
    async with local_bus() as (connection, bus_pid):
        progress.phase("starting Triton and workers (batching on)")
        config = stack_config(settings, batching=True)
        async with BenchStack(config, bus_connection=connection, bus_pid=bus_pid) as stack:
            for model in settings.models:
                results = run.models.setdefault(model, ModelResults(model))
                await measure_direct_ceiling(stack, results, settings, progress)
                await measure_queue_closed(stack, results, run, progress)
                await measure_queue_open(stack, results, settings, progress)
                await measure_direct_at_half_peak(stack, results, settings, progress)
            if settings.throughput_involved():
                run.throughput = await measure_throughput(stack, settings, progress, run.profiler)
            run.cold_start = await measure_worker_cold_start(stack, connection, settings, progress)
            run.worker_cpu = await measure_worker_cpu(stack, connection, settings, progress)
            if phase_latencies(settings):
                run.network = await measure_network_latency(stack, run, (connection, bus_pid), progress)
        if settings.batching_involved():
            await compare_batching(run, connection, bus_pid, progress)
    run.finished_at = time.time()
    return run
