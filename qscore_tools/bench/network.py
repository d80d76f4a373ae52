"""The queue path at network distance: the same points with the bus D ms away, and drains.

On loopback the bus is ~0.1 ms away; Azure never is. This phase starts endpoints with emulated
network latency (`LocalBus(latency_ms=...)`, docs/local-bus.md), points the run's stack at each
in turn (same Triton, fresh workers) and measures:

- the run's queue-path points again at the run's `bus_latency_ms` (same concurrency, same
  offered rate), so each figure is reported at 0 and at D with the ratio D / 0;
- drains, as a user sizing a deployment would: the request queue filled first while the one
  worker cannot take anything (stopped with SIGSTOP, so a drain does not pay a worker start),
  then let go; the drain rate is the replies' rate from the first reply to the last (so
  neither the first round trip nor the fill counts), for single-row
  requests at 0, D and each `drain_latencies_ms`, and for `drain_rows`-row requests at 0 and
  each `drain_rows_latencies_ms`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from qscore_tools.bench.queue_path import QueueMeasurement, measure_queue, wait_for_empty_queue
from qscore_tools.bench.stack import BenchStack
from qscore_tools.bench.workload import INPUT_NAME, load_pixels

if TYPE_CHECKING:
    from qscore.producer.settings import BodyFormat
    from qscore_tools.bench.runner import BenchRun, ProgressSink
    from qscore_tools.bench.settings import BenchSettings

REQUEST_QUEUE = "scoring-requests"
DRAIN_REPLY_TIMEOUT_S = 600.0
SEND_CHUNK = 500  # requests per producer.send while filling
DRAIN_BODY: BodyFormat = "binary"  # every drain's request body (qscore/contracts/binary.py)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainPoint:
    """One drain: `messages` requests of `rows` rows queued first, then one worker started."""

    model: str
    rows: int
    latency_ms: float  # the bus's one-way delay
    messages: int
    completed: int
    errors: int
    window_s: float  # first reply -> last reply
    messages_per_s: float
    samples_per_s: float
    worker_cores: float  # worker CPU-seconds per second over the window
    bus_cores: float
    body: str  # how request tensors travel: "binary" (the producer's default) or "json"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyComparison:
    """One queue-path point measured with the bus at 0 and at D."""

    model: str
    label: str
    at_zero: QueueMeasurement
    at_delay: QueueMeasurement

    @property
    def throughput_ratio(self) -> float | None:
        zero = self.at_zero.point.samples_per_s
        return self.at_delay.point.samples_per_s / zero if zero > 0 else None

    @property
    def p99_ratio(self) -> float | None:
        zero = self.at_zero.point.latency.p99_ms
        return self.at_delay.point.latency.p99_ms / zero if zero > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "label": self.label,
            "at_zero": self.at_zero.as_dict(),
            "at_delay": self.at_delay.as_dict(),
            "throughput_ratio": self.throughput_ratio,
            "p99_ratio": self.p99_ratio,
        }


@dataclass
class NetworkResults:
    bus_latency_ms: float
    points: list[LatencyComparison] = field(default_factory=list)
    drains: list[DrainPoint] = field(default_factory=list)

    def drain(self, rows: int, latency_ms: float) -> DrainPoint | None:
        return next((d for d in self.drains if d.rows == rows and d.latency_ms == latency_ms), None)

    def drain_ratio(self, rows: int, latency_ms: float) -> float | None:
        """Drain messages/s at `latency_ms` over the same drain at 0 (None: either is missing)."""
        zero, delayed = self.drain(rows, 0.0), self.drain(rows, latency_ms)
        if zero is None or delayed is None or zero.messages_per_s <= 0 or not delayed.completed:
            return None
        return delayed.messages_per_s / zero.messages_per_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "bus_latency_ms": self.bus_latency_ms,
            "points": [point.as_dict() for point in self.points],
            "drains": [
                drain.as_dict() | {"ratio_to_zero": self.drain_ratio(drain.rows, drain.latency_ms)}
                for drain in self.drains
            ],
        }


@contextlib.asynccontextmanager
async def bus_at(latency_ms: float, run_bus: tuple[str, int | None]) -> AsyncIterator[tuple[str, int | None]]:
    """(connection, pid) of an endpoint `latency_ms` away: the run's own at 0, else a new one."""
    if latency_ms <= 0:
        yield run_bus
        return
    from qscore_local.bus.launcher import LocalBus

    bus = LocalBus(latency_ms=latency_ms)
    async with bus as endpoint:
        yield endpoint.connection_string, bus.pid


def _request_rows(rows: int) -> np.ndarray:
    pixels = load_pixels()
    return np.ascontiguousarray(np.resize(pixels, (rows, pixels.shape[1])))


async def measure_drain(
    stack: BenchStack, *, model: str, rows: int, messages: int, latency_ms: float
) -> DrainPoint:
    """Fill the request queue while the stack's one worker is stopped (SIGSTOP), let it go, time
    the replies. The worker is started once per endpoint: its start is not what a drain measures."""
    from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer

    await wait_for_empty_queue(stack.bus_connection, REQUEST_QUEUE)
    inputs = {INPUT_NAME: _request_rows(rows)}
    settings = ProducerSettings(connection=stack.bus_connection, reply_timeout_s=DRAIN_REPLY_TIMEOUT_S)
    finished: list[float] = []
    errors = 0
    async with ScoringProducer(settings=settings) as producer:
        # The binary body (a JSON header, then the tensors' raw bytes), as the producer library sends
        # by default: for 128 rows it is 1.005 bytes per raw byte where JSON with base64 is 1.34.
        requests = [OutgoingRequest.build(model, inputs, body_format=DRAIN_BODY) for _ in range(messages)]
        stack.pause_workers()
        try:
            for start in range(0, messages, SEND_CHUNK):
                await producer.send(requests[start : start + SEND_CHUNK])
        finally:
            stack.pause_workers(False)
        cpu_at_first: dict[str, float] = {}
        async for outcome in producer.replies():
            if not outcome.ok:
                errors += 1
                continue
            if not finished:
                cpu_at_first = {role: probe() for role, probe in stack.cpu_probes().items()}
            finished.append(outcome.finished_at)
        cpu_at_last = {role: probe() for role, probe in stack.cpu_probes().items()}
    window = (max(finished) - min(finished)) if len(finished) > 1 else 0.0
    rate = (len(finished) - 1) / window if window > 0 else 0.0

    def cores(role: str) -> float:
        used = cpu_at_last.get(role, 0.0) - cpu_at_first.get(role, 0.0)
        return used / window if window > 0 else 0.0

    return DrainPoint(
        model=model,
        rows=rows,
        latency_ms=latency_ms,
        messages=messages,
        completed=len(finished),
        errors=errors,
        window_s=window,
        messages_per_s=rate,
        samples_per_s=rate * rows,
        worker_cores=cores("worker"),
        bus_cores=cores("bus"),
        body=DRAIN_BODY,
    )


def describe_drain(drain: DrainPoint) -> str:
    return (
        f"drain {drain.model} {drain.rows}-row ({drain.body} body), bus {drain.latency_ms:g} ms one way: "
        f"{drain.messages_per_s:,.0f} msg/s ({drain.samples_per_s:,.0f} samples/s), "
        f"worker {drain.worker_cores:.2f} cores, errors {drain.errors}"
    )


def points_to_repeat(run: BenchRun) -> list[tuple[str, QueueMeasurement]]:
    """The queue-path points to measure again at D: all of them, or in quick runs one (the peak)."""
    chosen: list[tuple[str, QueueMeasurement]] = []
    for model, results in run.models.items():
        if run.settings.quick:
            peak = results.queue_peak
            if peak is not None and not chosen and model == _drain_model(run):
                chosen.append((model, peak))
            continue
        chosen += [(model, m) for m in results.queue_closed + results.queue_open]
    if run.settings.quick and not chosen:
        first = next(iter(run.models.values()), None)
        if first is not None and first.queue_peak is not None:
            chosen.append((first.model, first.queue_peak))
    return chosen


def _drain_model(run: BenchRun) -> str | None:
    model = run.settings.throughput_model
    return model if model in run.models else None


def drain_plan(settings: BenchSettings) -> dict[float, list[tuple[int, int]]]:
    """latency (ms) -> [(rows per request, messages)] to drain there (on the throughput model)."""
    if not settings.throughput_involved():
        return {}
    plan: dict[float, list[tuple[int, int]]] = {}
    single = {0.0, settings.bus_latency_ms, *settings.drain_latencies_ms}
    for latency in single:
        plan.setdefault(latency, []).append((1, settings.drain_messages))
    for latency in {0.0, *settings.drain_rows_latencies_ms}:
        plan.setdefault(latency, []).append((settings.drain_rows, settings.drain_rows_messages))
    return plan


def phase_latencies(settings: BenchSettings) -> list[float]:
    """The endpoints the phase visits, nearest first (0 is the run's own bus)."""
    delay = settings.bus_latency_ms
    if delay <= 0:
        return []
    return sorted({*drain_plan(settings), delay})


async def measure_network_latency(
    stack: BenchStack, run: BenchRun, run_bus: tuple[str, int | None], progress: ProgressSink
) -> NetworkResults:
    """Every latency the run asks for, one endpoint at a time; the stack is left on the run's bus
    with its workers stopped."""
    settings = run.settings
    delay = settings.bus_latency_ms
    results = NetworkResults(bus_latency_ms=delay)
    plan = drain_plan(settings)
    model = _drain_model(run)
    try:
        for latency in phase_latencies(settings):
            progress.phase(f"bus {latency:g} ms away: drains" + (", queue path" if latency == delay else ""))
            async with bus_at(latency, run_bus) as (connection, pid):
                await stack.use_bus(connection, pid)
                if model is not None and plan.get(latency):
                    await stack.restart_workers(count=1)
                for rows, messages in plan.get(latency, []):
                    assert model is not None
                    drain = await measure_drain(
                        stack, model=model, rows=rows, messages=messages, latency_ms=latency
                    )
                    results.drains.append(drain)
                    progress.point(describe_drain(drain))
                if latency == delay and delay > 0:
                    await repeat_points(stack, run, results, progress)
                await stack.stop_workers()
    finally:
        await stack.use_bus(*run_bus)
    return results


async def repeat_points(
    stack: BenchStack, run: BenchRun, results: NetworkResults, progress: ProgressSink
) -> None:
    from qscore_tools.bench.runner import describe_queue

    settings = run.settings
    if stack.pool is None or stack.pool.alive() != settings.workers:  # the drains' one may do
        await stack.restart_workers()
    for model, at_zero in points_to_repeat(run):
        point = at_zero.point
        at_delay = await measure_queue(
            stack,
            model,
            concurrency=point.concurrency,
            rate_per_s=point.offered_per_s,
            processes=settings.producer_processes,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
            label=f"{at_zero.label} at {results.bus_latency_ms:g} ms",
        )
        results.points.append(LatencyComparison(model, at_zero.label, at_zero, at_delay))
        progress.point(describe_queue(at_delay))
