"""The scoring metrics every runtime records (worker and Functions alike).

Names, units and attributes are listed in docs/operations.md; dashboards, alerts and the
metric-driven scaler (deploy/) depend on them, so change them only together with that page.
Units follow OpenTelemetry's conventions (durations in seconds), which is also what the
Prometheus exporter turns into conventional names: `qscore.request.duration` (unit `s`)
becomes `qscore_request_duration_seconds`, `qscore.requests` becomes `qscore_requests_total`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from qscore.contracts import Timings
from qscore.telemetry.histogram_values import record_values
from qscore.telemetry.setup import generation, meter

REQUESTS = "qscore.requests"
REQUEST_DURATION = "qscore.request.duration"
BATCH_SIZE = "qscore.batch.size"
DEAD_LETTERS = "qscore.dead_letters"
ABANDONS = "qscore.abandons"
OUTPUT_MISMATCHES = "qscore.model_output_mismatches"
IN_FLIGHT = "qscore.in_flight"
IN_FLIGHT_LIMIT = "qscore.in_flight.limit"

# The `stage` attribute of qscore.request.duration: the parts of a request's life (Timings).
STAGES = ("queue_wait", "batch_wait", "inference", "total")
# Seconds from sub-millisecond batching waits up to lock-duration-sized queue waits.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _status_text(status: object) -> str:
    return str(getattr(status, "value", status))


@dataclass(frozen=True)
class ScoringMetrics:
    """Instruments for scoring; build with `scoring_metrics()`."""

    meter: Meter
    requests: Counter
    duration: Histogram
    batch_size: Histogram
    dead_letters: Counter
    abandons: Counter
    output_mismatches: Counter
    # The in-flight gauges' source (held, limit), set by `observe_in_flight`; registered once.
    _in_flight: list[Callable[[], int]] = field(default_factory=list)

    @classmethod
    def create(cls, meter: Meter) -> ScoringMetrics:
        return cls(
            meter=meter,
            requests=meter.create_counter(REQUESTS, unit="{request}", description="Replies sent, by outcome"),
            duration=meter.create_histogram(
                REQUEST_DURATION,
                unit="s",
                description="Time a request spent per stage (queue_wait, batch_wait, inference, total)",
                explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
            ),
            batch_size=meter.create_histogram(
                BATCH_SIZE,
                unit="{request}",
                description="Requests per Triton call",
                explicit_bucket_boundaries_advisory=BATCH_SIZE_BUCKETS,
            ),
            dead_letters=meter.create_counter(DEAD_LETTERS, unit="{message}", description="Dead-lettered"),
            abandons=meter.create_counter(ABANDONS, unit="{message}", description="Abandoned for redelivery"),
            output_mismatches=meter.create_counter(
                OUTPUT_MISMATCHES,
                unit="{call}",
                description="Triton results that did not fit their batch (model_output_mismatch)",
            ),
        )

    def record_reply(
        self,
        model: str,
        version: str | None,
        status: object,
        timings: Timings,
        *,
        error_code: str | None = None,
    ) -> None:
        """One reply sent. `status` is a ReplyStatus or its text; stage latencies come from `timings`.

        Batch wait and inference are recorded only for scored requests: a rejected request
        never reached Triton and its zeros would drag the percentiles down.
        """
        self.record_replies([(model, version or "", status, timings, error_code)])

    def record_replies(self, replies: Iterable[tuple[str, str, object, Timings, str | None]]) -> None:
        """Replies sent together, each (model, version, status, timings, error code): one
        `qscore.requests` add of their count per (model, version, status, error code), and each
        reply's stage durations (`record_reply`'s figures), each series' values recorded together
        (`record_values`: the attributes cleaned and hashed once, not once a value)."""
        counts: dict[tuple[str, str, str, str | None], int] = {}
        stages: dict[tuple[str, str, str], list[float]] = {}  # each series' values, in order
        for model, version, reply_status, timings, error_code in replies:
            status = _status_text(reply_status)
            key = (model, version, status, _status_text(error_code) if error_code else None)
            counts[key] = counts.get(key, 0) + 1
            values = [("queue_wait", timings.queue_wait_ms), ("total", timings.total_ms)]
            if status == "ok":
                values += [("batch_wait", timings.batch_wait_ms), ("inference", timings.inference_ms)]
            for stage, milliseconds in values:
                series = stages.get((model, version, stage))
                if series is None:
                    series = stages[(model, version, stage)] = []
                series.append(milliseconds / 1000)
        for (model, version, stage), seconds in stages.items():
            record_values(self.duration, {"model": model, "version": version, "stage": stage}, seconds)
        for (model, version, status, error_code), count in counts.items():
            attributes = {"model": model, "version": version, "status": status}
            if error_code:
                attributes["error_code"] = error_code
            self.requests.add(count, attributes)

    def record_batch(self, model: str, version: str, size: int) -> None:
        """One Triton call carrying `size` requests."""
        self.batch_size.record(size, {"model": model, "version": version})

    def record_dead_letter(self, reason: str) -> None:
        self.dead_letters.add(1, {"reason": _status_text(reason)})

    def record_abandon(self, reason: str) -> None:
        self.abandons.add(1, {"reason": _status_text(reason)})

    def record_output_mismatch(self, model: str, version: str) -> None:
        """One Triton call whose result did not fit its batch: its requests got `model_output_mismatch`."""
        self.output_mismatches.add(1, {"model": model, "version": version})

    def observe_in_flight(self, held: Callable[[], int], limit: Callable[[], int]) -> None:
        """Gauges of the messages a worker holds (received, not yet settled) and how many it may.

        `held / limit` is the worker's slot utilisation, one of the signals the metric-driven
        scaler can read. The callbacks are read at every collection (a scrape, an export); a
        second call (another worker in the same process) replaces the source.
        """

        first = not self._in_flight
        self._in_flight[:] = [held, limit]
        if not first:
            return  # a later worker in this process (tests) takes over the same gauges

        def current(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self._in_flight[0]())]

        def ceiling(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self._in_flight[1]())]

        self.meter.create_observable_gauge(
            IN_FLIGHT, [current], unit="{message}", description="Messages held: received, not settled"
        )
        self.meter.create_observable_gauge(
            IN_FLIGHT_LIMIT, [ceiling], unit="{message}", description="Most messages a worker holds"
        )


_cache: tuple[int, ScoringMetrics] | None = None


def scoring_metrics() -> ScoringMetrics:
    """The process's scoring instruments (rebuilt when telemetry is reconfigured)."""
    global _cache
    if _cache is None or _cache[0] != generation():
        _cache = (generation(), ScoringMetrics.create(meter()))
    return _cache[1]
