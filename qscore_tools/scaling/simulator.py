"""Pure, deterministic KEDA + HPA simulation of a worker Deployment on a Service Bus queue.

One step is one second. In each second, in this order:
1. messages arrive (FIFO cohorts stamped with their arrival second);
2. on KEDA polling ticks (t % pollingInterval == 0): activation, the queue's
   ActiveMessageCount (every message not yet completed, so locked/in-flight ones count)
   against activationMessageCount: active and 0 replicas -> max(min, 1); inactive,
   minReplicaCount 0, replicas > 0 and no active poll within cooldownPeriod -> 0;
3. on HPA sync ticks (every 15 s) with replicas > 0: `HpaController.sync` on the same count
   (KEDA serves the metric live to the HPA) with target messageCount;
4. pods that have finished starting (pod_startup_s after they were created) complete
   per_replica_rate messages each, oldest first. Scale-in removes not-yet-ready pods first,
   then the newest, as a ReplicaSet does.
Queue age is completion second + 1 - arrival second (1 s resolution).

With a prometheus trigger (`ScalerSpec.prometheus`), the HPA gets a second metric, read like
the workers' own metrics through Prometheus: over the last `window_s` seconds, throughput X
(completions/s) and mean queue wait W (of the messages completed, in whole seconds waited
beyond their arrival second), metric = X * (1 + W / drain_target_s) against `threshold`. The
HPA takes the larger of the two metrics' replica counts; KEDA is active when either is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from qscore_tools.scaling.config import ScalerSpec
from qscore_tools.scaling.hpa import HPA_SYNC_PERIOD_S, HpaController
from qscore_tools.scaling.traffic import TrafficShape

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SimulationSettings:
    """Facts about the workload that are not in the ScaledObject."""

    duration_s: int
    per_replica_rate: float
    pod_startup_s: int = 20
    hpa_sync_period_s: int = HPA_SYNC_PERIOD_S
    initial_replicas: int | None = None
    # None: KEDA's count is taken after arrivals, before serving (the second's arrivals count as
    # active: a 1-s-resolution view). A number: the count is what a fleet that keeps up really
    # shows, the previous second's leftover backlog plus the messages in flight, completions x
    # this many seconds each is locked while scored (Little's law); near 0 when keeping up.
    active_time_s: float | None = None
    # True: the workers' metrics already show the first second's traffic served (a fleet that was
    # running before t=0), so a metric trigger does not read an empty window at its first sync.
    warm_start: bool = False
    # [start, end) seconds in which Prometheus cannot be read: the prometheus trigger fails, the
    # count triggers still scale out (the HPA does not scale in while a metric is missing).
    metrics_outage_s: tuple[int, int] | None = None
    # Triton scaled to zero (dev): None, Triton is always up. A number: seconds from KEDA
    # activating Triton (a message queued, at a Triton polling tick) until it is ready: GPU node
    # provisioning, image pull, model load. Workers score nothing until then (they wait for its
    # readiness); Triton goes back to zero after `triton_cooldown_s` without a queued message.
    triton_cold_start_s: int | None = None
    triton_polling_interval_s: int = 15
    triton_cooldown_s: int = 1800


@dataclass
class Timeline:
    """Per-second series, for the plot and for tests."""

    t: list[int] = field(default_factory=list)
    backlog: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def record(self, t: int, backlog: float, replicas: int, ready: int, arrivals: float) -> None:
        self.t.append(t)
        self.backlog.append(backlog)
        self.replicas.append(replicas)
        self.ready.append(ready)
        self.arrivals.append(arrivals)


@dataclass(frozen=True)
class SimulationSummary:
    """The figures an operator decides on."""

    drain_time_s: int | None
    peak_replicas: int
    peak_backlog: float
    queue_age_p99_s: float
    replica_seconds: float
    messages_arrived: float
    messages_unserved: float


@dataclass(frozen=True)
class SimulationResult:
    spec: ScalerSpec
    settings: SimulationSettings
    summary: SimulationSummary
    timeline: Timeline


@dataclass
class _Pods:
    """Replica start times: a pod is ready pod_startup_s after it was created."""

    ready_at: list[int] = field(default_factory=list)

    def scale_to(self, count: int, now: int, startup_s: int) -> None:
        if count > len(self.ready_at):
            self.ready_at.extend([now + startup_s] * (count - len(self.ready_at)))
        else:
            self.ready_at.sort()
            del self.ready_at[count:]

    def ready(self, now: int) -> int:
        return sum(1 for at in self.ready_at if at <= now)


@dataclass
class _ColdTriton:
    """Triton that scales to zero: KEDA activates it on a queued message at its polling ticks;
    it is ready `start_s` later and scales to zero after `cooldown_s` without a message."""

    start_s: int
    polling_interval_s: int
    cooldown_s: int
    ready_at: int | None = None
    last_active: int | None = None

    def up(self, t: int, queued: float) -> bool:
        if t % self.polling_interval_s == 0:
            if queued >= 1:
                self.last_active = t
                if self.ready_at is None:
                    self.ready_at = t + self.start_s
            elif self.last_active is not None and t > self.last_active + self.cooldown_s:
                self.ready_at = self.last_active = None
        return self.ready_at is not None and t >= self.ready_at


def weighted_percentile(samples: list[tuple[float, float]], fraction: float) -> float:
    """Smallest value v such that at least `fraction` of the total weight is <= v."""
    total = sum(weight for _, weight in samples)
    if total <= 0:
        return 0.0
    seen = 0.0
    for value, weight in sorted(samples):
        seen += weight
        if seen >= fraction * total - 1e-9:
            return value
    return sorted(samples)[-1][0]


def _serve(
    queue: deque[list[float]], capacity: float, now: int, ages: list[tuple[float, float]]
) -> tuple[float, float]:
    """Complete up to `capacity` messages oldest-first, recording each cohort's age; returns the
    messages completed and the sum of their waits (seconds beyond the arrival second)."""
    completed = waited = 0.0
    while capacity > 1e-9 and queue:
        cohort = queue[0]
        taken = min(cohort[1], capacity)
        ages.append((now + 1 - cohort[0], taken))
        completed += taken
        waited += taken * (now - cohort[0])
        cohort[1] -= taken
        capacity -= taken
        if cohort[1] <= 1e-9:
            queue.popleft()
    return completed, waited


@dataclass
class WorkerSignal:
    """What Prometheus would compute from the workers' metrics over the last `window_s` seconds:
    rate(qscore_requests_total) and the mean queue wait of those requests."""

    window_s: int
    drain_target_s: float
    _seconds: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, completed: float, waited: float) -> None:
        self._seconds.append((completed, waited))
        if len(self._seconds) > self.window_s:
            self._seconds.popleft()

    def value(self) -> float:
        completed = sum(c for c, _ in self._seconds)
        if completed <= 1e-9:
            return 0.0
        throughput = completed / self.window_s
        mean_wait = sum(w for _, w in self._seconds) / completed
        return throughput * (1 + mean_wait / self.drain_target_s)


@dataclass
class _Autoscaler:
    """KEDA's activation loop and the HPA it drives, for one ScaledObject."""

    spec: ScalerSpec
    hpa_sync_period_s: int
    last_active: int | None = None

    def __post_init__(self) -> None:
        spec = self.spec
        # KEDA sets the HPA's minReplicas to minReplicaCount, or 1 when that is 0.
        self.hpa = HpaController(max(spec.min_replicas, 1), spec.max_replicas, spec.scale_up, spec.scale_down)

    def step(self, t: int, replicas: int, count: int, signal: float | None = 0.0) -> int:
        """`signal` None: the prometheus trigger cannot be read this second."""
        spec = self.spec
        prometheus = spec.prometheus
        failed = prometheus is not None and signal is None
        if t % spec.polling_interval_s == 0:
            active = count > spec.activation_message_count or (
                prometheus is not None and signal is not None and signal > prometheus.activation_threshold
            )
            if active:
                self.last_active = t
                if replicas == 0:
                    replicas = max(spec.min_replicas, 1)
            elif spec.min_replicas == 0 and replicas > 0 and self._cooled_down(t):
                replicas = 0
        if replicas > 0 and t % self.hpa_sync_period_s == 0:
            metrics = [(float(count), float(spec.message_count))]
            if prometheus is not None and signal is not None:
                metrics.append((signal, prometheus.threshold))
            replicas = self.hpa.sync_metrics(float(t), replicas, metrics, one_failed=failed)
        return replicas

    def _cooled_down(self, t: int) -> bool:
        return self.last_active is None or self.last_active + self.spec.cooldown_period_s < t


def simulate(
    spec: ScalerSpec,
    traffic: TrafficShape,
    settings: SimulationSettings,
    *,
    on_progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Run the simulation; deterministic for the same inputs."""
    autoscaler = _Autoscaler(spec, settings.hpa_sync_period_s)
    pods = _Pods()
    initial = spec.min_replicas if settings.initial_replicas is None else settings.initial_replicas
    pods.scale_to(initial, -settings.pod_startup_s, settings.pod_startup_s)
    queue: deque[list[float]] = deque()
    ages: list[tuple[float, float]] = []
    timeline = Timeline()
    prometheus = spec.prometheus
    signal = WorkerSignal(
        prometheus.window_s if prometheus else 60, prometheus.drain_target_s if prometheus else 30
    )
    leftover = completed = 0.0  # the previous second's, for `active_time_s`
    triton = (
        None
        if settings.triton_cold_start_s is None
        else _ColdTriton(
            settings.triton_cold_start_s, settings.triton_polling_interval_s, settings.triton_cooldown_s
        )
    )
    if settings.warm_start:
        served = min(traffic.arrivals(0), initial * settings.per_replica_rate)
        for _ in range(signal.window_s):
            signal.add(served, 0.0)
    for t in range(settings.duration_s):
        incoming = traffic.arrivals(t)
        if incoming > 0:
            queue.append([float(t), incoming])
        # Service Bus reports whole messages; KEDA compares and divides that integer count.
        if settings.active_time_s is None:
            count = math.floor(sum(c[1] for c in queue) + 1e-9)
        else:
            count = math.floor(leftover + completed * settings.active_time_s + 1e-9)
        outage = settings.metrics_outage_s
        reading = None if outage is not None and outage[0] <= t < outage[1] else signal.value()
        replicas = autoscaler.step(t, len(pods.ready_at), count, reading)
        pods.scale_to(replicas, t, settings.pod_startup_s)
        ready = pods.ready(t)
        serving = ready if triton is None or triton.up(t, sum(c[1] for c in queue)) else 0
        completed, waited = _serve(queue, serving * settings.per_replica_rate, t, ages)
        signal.add(completed, waited)
        leftover = sum(c[1] for c in queue)
        timeline.record(t, sum(c[1] for c in queue), len(pods.ready_at), ready, incoming)
        if on_progress is not None and (t + 1) % 1000 == 0:
            on_progress(t + 1, settings.duration_s)
    # Messages still queued at the end count with the age they have reached (a lower bound).
    ages.extend((settings.duration_s - c[0], c[1]) for c in queue)
    return SimulationResult(spec, settings, _summarize(timeline, ages), timeline)


def _summarize(timeline: Timeline, ages: list[tuple[float, float]]) -> SimulationSummary:
    return SimulationSummary(
        drain_time_s=drain_time(timeline),
        peak_replicas=max(timeline.replicas, default=0),
        peak_backlog=max(timeline.backlog, default=0.0),
        queue_age_p99_s=weighted_percentile(ages, 0.99),
        # One sample per second, so the sum of replica counts is in replica-seconds.
        replica_seconds=float(sum(timeline.replicas)),
        messages_arrived=sum(timeline.arrivals),
        messages_unserved=timeline.backlog[-1] if timeline.backlog else 0.0,
    )


def drain_time(timeline: Timeline) -> int | None:
    """Seconds from the backlog's peak to the first later second it is under one message."""
    if not timeline.backlog:
        return None
    peak_at = max(range(len(timeline.backlog)), key=lambda i: (timeline.backlog[i], -i))
    if timeline.backlog[peak_at] < 1:
        return 0
    for i in range(peak_at, len(timeline.backlog)):
        if timeline.backlog[i] < 1:
            return timeline.t[i] - timeline.t[peak_at]
    return None
