"""The issue's goals, checked against one run, and a named bottleneck where one is missed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from qscore_tools.bench.cold_start import COLD_START_TARGET_S
from qscore_tools.bench.network import DrainPoint, NetworkResults
from qscore_tools.bench.queue_path import QueueMeasurement
from qscore_tools.bench.runner import BenchRun, ModelResults
from qscore_tools.bench.throughput_goals import throughput_goals

COMPUTE_BOUND_MODEL = "bench_mlp"
OVERHEAD_BOUND_MODEL = "digits"
CEILING_RATIO_TARGET = 0.9
BATCHING_GAIN_TARGET = 5.0
LATENCY_SLACK_MS = 5.0
WORKER_RSS_TARGET_MB = 200.0
WORKER_MESSAGES_PER_CORE_TARGET = 3000.0
# A single-threaded Python process (worker, bus, producer) is saturated near one core.
SATURATED_CORES = 0.85
# Issue 23: drain throughput with the bus at network distance, over the same drain at 0:
# (rows per request, one-way latency in ms, target ratio).
DRAIN_RATIO_TARGETS = ((1, 5.0, 0.9), (1, 25.0, 0.8), (128, 5.0, 0.9))
DRAIN_CEILING_TARGET = 0.4  # many-row drain samples/s at 0 over the direct-Triton ceiling
# Issue 23's goal table, in its order: key -> (name, target) for when this run has no row for it.
ISSUE_23_GOALS = {
    "drain_single_5ms": ("single-row drain throughput, bus at 5 ms one way / at 0", ">= 0.9"),
    "drain_single_25ms": ("single-row drain throughput, bus at 25 ms one way / at 0", ">= 0.8"),
    "drain_rows_5ms": ("128-row (binary body) drain throughput, bus at 5 ms one way / at 0", ">= 0.9"),
    "drain_rows_ceiling": ("128-row (binary body) drain samples/s at 0 / direct-Triton ceiling", ">= 0.4"),
    "wire_bytes": ("bytes on the wire per sample, binary body / raw tensor bytes", "<= 1.1"),
    "worker_cpu_all_middleware": (
        "worker messages per CPU-second, single-row, all middleware on",
        ">= 3,000",
    ),
    "p99_half_peak": (
        "single-row p99 at half the peak, loopback (ms)",
        "<= direct p99 + 2 x max batch delay + 5 ms",
    ),
    "cold_start": ("worker cold start to first reply (s)", "<= 1.5"),
}


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    measured: float | None  # None: not measured in this run (e.g. the model was not selected)
    met: bool | None
    bottleneck: str = ""
    key: str = ""  # an issue's goal this row stands for (ISSUE_23_GOALS), if any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bottleneck(measurement: QueueMeasurement, usable_cores: int) -> str:
    """Which stage limits a queue-path point: a saturated process, the whole CPU, or the slowest stage."""
    point = measurement.point
    used = {
        role: cost.cpu_s / cost.window_s / max(1, cost.processes) for role, cost in measurement.costs.items()
    }
    used["producer"] = point.client_cpu_fraction
    busiest_role, busiest = max(used.items(), key=lambda item: item[1])
    shares = ", ".join(f"{role} {cores:.2f}" for role, cores in sorted(used.items(), key=lambda i: -i[1]))
    total = sum(cost.cpu_s / cost.window_s for cost in measurement.costs.values()) + point.client_cpu_fraction
    stage = max(point.stages_ms.items(), key=lambda item: item[1], default=("", 0.0))
    stage_text = f"; largest stage {stage[0].removesuffix('_ms')} {stage[1]:.1f} ms" if stage[0] else ""
    if busiest >= SATURATED_CORES:
        verdict = f"{busiest_role} saturated ({busiest:.2f} cores per process)"
    elif total >= 0.9 * usable_cores:
        verdict = f"machine CPU saturated ({total:.2f} of {usable_cores} cores across all roles)"
    else:
        verdict = "no process saturated: latency-bound"
    return f"{verdict}; cores per process: {shares}{stage_text}"


def has_samples(measurement: QueueMeasurement | None) -> bool:
    """A point that completed requests; one with none measured nothing (it is no figure of 0)."""
    return measurement is not None and measurement.point.completed > 0


def unmeasured(name: str, target: str, why: str) -> Goal:
    """A goal this run has no figure for: reported as "not measured", never as met."""
    return Goal(name, target, None, None, why)


def _ratio_goal(run: BenchRun, cores: int) -> Goal:
    results = run.models.get(COMPUTE_BOUND_MODEL)
    peak = results.queue_peak if results else None
    name = f"{COMPUTE_BOUND_MODEL} queue path / direct ceiling"
    if results is None:  # the model was not selected
        return Goal(name, f">= {CEILING_RATIO_TARGET}", None, None)
    if results.ceiling is None or results.ceiling.samples_per_s <= 0:
        return unmeasured(name, f">= {CEILING_RATIO_TARGET}", "no direct ceiling measured")
    if peak is None or not has_samples(peak):
        return unmeasured(name, f">= {CEILING_RATIO_TARGET}", "no queue-path point completed any request")
    ratio = peak.point.samples_per_s / results.ceiling.samples_per_s
    met = ratio >= CEILING_RATIO_TARGET
    return Goal(
        name,
        f">= {CEILING_RATIO_TARGET}",
        ratio,
        met,
        "" if met else bottleneck(peak, cores),
    )


def _batching_goal(run: BenchRun, cores: int) -> Goal:
    name = f"batching gain on {run.settings.batching_model} (on / batch of one)"
    target = f">= {BATCHING_GAIN_TARGET}"
    if run.batching is None:
        return Goal(name, target, None, None)
    for side, measurement in (("on", run.batching.on), ("off", run.batching.off)):
        if not has_samples(measurement):
            return unmeasured(name, target, f"batching {side} completed no requests (see its point)")
    gain = run.batching.gain
    met = gain >= BATCHING_GAIN_TARGET
    return Goal(
        name, f">= {BATCHING_GAIN_TARGET}", gain, met, "" if met else bottleneck(run.batching.on, cores)
    )


def half_peak_measurement(results: ModelResults, fraction: float = 0.5) -> QueueMeasurement | None:
    """The open-loop point offered closest to `fraction` of the closed-loop peak."""
    peak = results.queue_peak
    if peak is None or not results.queue_open:
        return None
    wanted = peak.point.samples_per_s * fraction
    return min(results.queue_open, key=lambda m: abs(m.point.offered_per_s - wanted))


def _latency_goal(run: BenchRun, results: ModelResults, cores: int, fraction: float = 0.5) -> Goal:
    """p99 at a fraction of the peak against direct Triton's p99 at half the peak (the reference
    point the run measures; at a quarter, direct Triton's own p99 is no higher)."""
    name = f"{results.model} p99 at {'half' if fraction == 0.5 else 'a quarter of the'} peak (ms)"
    half = half_peak_measurement(results, fraction)
    direct = results.direct_at_half_peak
    if half is None or direct is None:
        return Goal(name, "<= direct p99 + 2 x delay + 5 ms", None, None)
    if not has_samples(half) or direct.completed <= 0:
        which = f"queue point '{half.label}'" if not has_samples(half) else "direct point"
        return unmeasured(name, "<= direct p99 + 2 x delay + 5 ms", f"{which} completed no requests")
    limit = direct.latency.p99_ms + 2 * run.settings.max_batch_delay_ms + LATENCY_SLACK_MS
    met = half.point.latency.p99_ms <= limit
    delay = run.settings.max_batch_delay_ms
    target = f"<= {limit:.1f} (direct p99 {direct.latency.p99_ms:.1f} + 2 x {delay:g} + 5)"
    return Goal(name, target, half.point.latency.p99_ms, met, "" if met else bottleneck(half, cores))


def _worker_goals(run: BenchRun, cores: int) -> list[Goal]:
    results = run.models.get(OVERHEAD_BOUND_MODEL)
    peak = results.queue_peak if results else None
    every = [m for r in run.models.values() for m in r.queue_closed + r.queue_open]
    measured_rss = [m.costs["worker"].peak_rss_mb for m in every if "worker" in m.costs]
    rss = max((mb for mb in measured_rss if mb > 0), default=None)
    goals = [
        Goal(
            "worker peak RSS (MB)",
            f"<= {WORKER_RSS_TARGET_MB:g}",
            rss,
            None if rss is None else rss <= WORKER_RSS_TARGET_MB,
        )
    ]
    cost = peak.costs.get("worker") if peak and has_samples(peak) else None
    per_core = cost.messages_per_cpu_s if cost and cost.messages_per_cpu_s > 0 else None
    met = None if per_core is None else per_core >= WORKER_MESSAGES_PER_CORE_TARGET
    detail = bottleneck(peak, cores) if peak is not None and met is False else ""
    goals.append(
        Goal(
            f"worker messages/s per core on {OVERHEAD_BOUND_MODEL}",
            f">= {WORKER_MESSAGES_PER_CORE_TARGET:g}",
            per_core,
            met,
            detail,
        )
    )
    return goals


def _worker_cpu_goal(run: BenchRun) -> Goal:
    """Issue 23: messages per worker CPU-second, single-row digits, every middleware on."""
    name = ISSUE_23_GOALS["worker_cpu_all_middleware"][0]
    target = f">= {WORKER_MESSAGES_PER_CORE_TARGET:,.0f}"
    figures = run.worker_cpu
    if figures is None or not figures.get("messages_per_cpu_s"):
        return Goal(name, target, None, None, "digits not selected", key="worker_cpu_all_middleware")
    measured = figures["messages_per_cpu_s"]
    met = measured >= WORKER_MESSAGES_PER_CORE_TARGET
    detail = (
        ""
        if met
        else f"the worker process's own CPU per message: {figures['worker_cpu_s']:.2f} CPU-s for "
        f"{figures['messages']:,.0f} messages (profile: qscore_tools.bench.per_message_cpu --profile)"
    )
    return Goal(name, target, measured, met, detail, key="worker_cpu_all_middleware")


def _cold_start_goal(run: BenchRun) -> Goal:
    name = "worker cold start to first reply (s)"
    target = f"<= {COLD_START_TARGET_S:g}"
    if run.cold_start is None:
        return Goal(name, target, None, None, "digits not selected", key="cold_start")
    measured = run.cold_start.first_reply_median_s
    met = measured <= COLD_START_TARGET_S
    detail = (
        ""
        if met
        else f"ready after {run.cold_start.ready_median_s:.2f} s (median of {run.cold_start.trials})"
    )
    return Goal(name, target, measured, met, detail, key="cold_start")


def _network_goals(run: BenchRun) -> list[Goal]:
    """Drain throughput at 5 and 25 ms one way over the drain at 0 (issue 23's targets)."""
    network = run.network
    if network is None:
        return []
    goals = []
    for many_rows, latency_ms, target in DRAIN_RATIO_TARGETS:
        rows = run.settings.drain_rows if many_rows > 1 else 1
        zero = network.drain(rows, 0.0)
        body = f" ({zero.body} body)" if zero is not None and rows > 1 else ""
        name = (
            f"{'single' if rows == 1 else rows}-row{body} drain throughput, "
            f"bus at {latency_ms:g} ms one way / at 0"
        )
        key = f"drain_{'single' if rows == 1 else 'rows'}_{latency_ms:g}ms"
        ratio = network.drain_ratio(rows, latency_ms)
        if ratio is None:
            why = f"no {rows}-row drain at 0 and {latency_ms:g} ms"
            goals.append(Goal(name, f">= {target}", None, None, why, key=key))
            continue
        met = ratio >= target
        detail = ""
        if not met:
            zero, delayed = network.drain(rows, 0.0), network.drain(rows, latency_ms)
            assert zero is not None and delayed is not None
            detail = (
                f"{_drain_bound(delayed)}; {delayed.messages_per_s:,.0f} msg/s at {latency_ms:g} ms vs "
                f"{zero.messages_per_s:,.0f} at 0; worker {delayed.worker_cores:.2f} vs "
                f"{zero.worker_cores:.2f} cores, bus {delayed.bus_cores:.2f} vs {zero.bus_cores:.2f}"
            )
        goals.append(Goal(name, f">= {target}", ratio, met, detail, key=key))
    goals.append(_drain_ceiling_goal(run, network))
    return goals


def _drain_bound(drain: DrainPoint) -> str:
    """Which process bound a drain, from its cores over the drain (worker, then the bus)."""
    if drain.worker_cores >= SATURATED_CORES:
        return "worker saturated"
    if drain.bus_cores >= SATURATED_CORES:
        return "bus saturated"
    return "no process saturated: the worker waits on broker round trips"


def _drain_ceiling_goal(run: BenchRun, network: NetworkResults) -> Goal:
    """The many-row drain at 0 (binary body) in samples/s over the drain model's direct ceiling."""
    rows = run.settings.drain_rows
    zero = network.drain(rows, 0.0)
    model = run.settings.throughput_model
    results = run.models.get(model)
    ceiling = results.ceiling.samples_per_s if results and results.ceiling else 0.0
    body = f" ({zero.body} body)" if zero is not None else ""
    name = f"{rows}-row{body} drain samples/s at 0 / direct-Triton ceiling ({model})"
    target = f">= {DRAIN_CEILING_TARGET}"
    if zero is None or not zero.completed or ceiling <= 0:
        why = "no drain at 0" if zero is None or not zero.completed else "no direct ceiling measured"
        return Goal(name, target, None, None, why, key="drain_rows_ceiling")
    ratio = zero.samples_per_s / ceiling
    met = ratio >= DRAIN_CEILING_TARGET
    detail = (
        ""
        if met
        else f"{_drain_bound(zero)}; {zero.samples_per_s:,.0f} samples/s vs ceiling {ceiling:,.0f}; "
        f"worker {zero.worker_cores:.2f} cores, bus {zero.bus_cores:.2f}"
    )
    return Goal(name, target, ratio, met, detail, key="drain_rows_ceiling")


WIRE_BYTES_TARGET = 1.1


def _wire_bytes_goal() -> Goal:
    """Bytes on the wire per sample: a 128-row digits request's binary body over its tensors' raw
    bytes (qscore_tools/bench/wire_bytes.py builds it as the producer library sends it)."""
    from qscore_tools.bench.wire_bytes import WIRE_ROWS, wire_bytes

    figures = wire_bytes()
    ratio = figures.ratio("binary")
    met = ratio <= WIRE_BYTES_TARGET
    detail = "" if met else f"body {figures.body_bytes['binary']} bytes for {figures.raw_bytes} raw"
    name = f"bytes on the wire per sample, {WIRE_ROWS}-row binary body / raw tensor bytes"
    return Goal(name, f"<= {WIRE_BYTES_TARGET:g}", ratio, met, detail, key="wire_bytes")


def evaluate(run: BenchRun) -> list[Goal]:
    cores = int(run.machine.get("usable_cores") or 1)
    goals = [_ratio_goal(run, cores), _batching_goal(run, cores)]
    for results in run.models.values():
        goals += [_latency_goal(run, results, cores, fraction) for fraction in (0.25, 0.5)]
        if results.model == OVERHEAD_BOUND_MODEL:  # single-row digits: issue 23's p99 goal
            goals[-1] = replace(goals[-1], key="p99_half_peak")
    goals += throughput_goals(run, cores)
    goals += _network_goals(run)
    goals.append(_wire_bytes_goal())
    return [*goals, *_worker_goals(run, cores), _worker_cpu_goal(run), _cold_start_goal(run)]


def issue_23_goals(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 23's table: exactly its goals, in its order, each this run's row or "not measured"."""
    by_key = {goal.get("key"): goal for goal in goals if goal.get("key")}
    return [
        by_key.get(key) or Goal(name, target, None, None, "not in this run", key=key).as_dict()
        for key, (name, target) in ISSUE_23_GOALS.items()
    ]
