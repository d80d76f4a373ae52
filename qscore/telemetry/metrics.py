"""The scoring metrics every runtime records (worker and Functions alike).

Names, units and attributes are listed in docs/operations.md; dashboards and alerts depend on
them, so change them only together with that page.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

from qscore.contracts import Timings
from qscore.telemetry.setup import generation, meter

REQUESTS = "qscore.requests"
QUEUE_WAIT = "qscore.request.queue_wait"
BATCH_WAIT = "qscore.request.batch_wait"
INFERENCE = "qscore.request.inference"
TOTAL = "qscore.request.total"
BATCH_SIZE = "qscore.batch.size"
DEAD_LETTERS = "qscore.dead_letters"
ABANDONS = "qscore.abandons"

# Milliseconds from sub-millisecond batching waits up to lock-duration-sized queue waits.
LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _status_text(status: object) -> str:
    return str(getattr(status, "value", status))


@dataclass(frozen=True)
class ScoringMetrics:
    """Instruments for scoring; build with `scoring_metrics()`."""

    requests: Counter
    queue_wait: Histogram
    batch_wait: Histogram
    inference: Histogram
    total: Histogram
    batch_size: Histogram
    dead_letters: Counter
    abandons: Counter

    @classmethod
    def create(cls, meter: Meter) -> ScoringMetrics:
        def latency(name: str, description: str) -> Histogram:
            return meter.create_histogram(
                name,
                unit="ms",
                description=description,
                explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
            )

        return cls(
            requests=meter.create_counter(REQUESTS, unit="{request}", description="Replies sent, by outcome"),
            queue_wait=latency(QUEUE_WAIT, "Enqueued on Service Bus until received by a worker"),
            batch_wait=latency(BATCH_WAIT, "Received until its batch was sent to Triton"),
            inference=latency(INFERENCE, "Triton call for the batch the request was in"),
            total=latency(TOTAL, "Enqueued until the reply was sent"),
            batch_size=meter.create_histogram(
                BATCH_SIZE,
                unit="{request}",
                description="Requests per Triton call",
                explicit_bucket_boundaries_advisory=BATCH_SIZE_BUCKETS,
            ),
            dead_letters=meter.create_counter(DEAD_LETTERS, unit="{message}", description="Dead-lettered"),
            abandons=meter.create_counter(ABANDONS, unit="{message}", description="Abandoned for redelivery"),
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
        attributes = {"model": model, "version": version or "", "status": _status_text(status)}
        if error_code:
            attributes["error_code"] = _status_text(error_code)
        self.requests.add(1, attributes)
        stage_attributes = {"model": model, "version": version or ""}
        self.queue_wait.record(timings.queue_wait_ms, stage_attributes)
        self.total.record(timings.total_ms, stage_attributes)
        if attributes["status"] == "ok":
            self.batch_wait.record(timings.batch_wait_ms, stage_attributes)
            self.inference.record(timings.inference_ms, stage_attributes)

    def record_batch(self, model: str, version: str, size: int) -> None:
        """One Triton call carrying `size` requests."""
        self.batch_size.record(size, {"model": model, "version": version})

    def record_dead_letter(self, reason: str) -> None:
        self.dead_letters.add(1, {"reason": _status_text(reason)})

    def record_abandon(self, reason: str) -> None:
        self.abandons.add(1, {"reason": _status_text(reason)})


_cache: tuple[int, ScoringMetrics] | None = None


def scoring_metrics() -> ScoringMetrics:
    """The process's scoring instruments (rebuilt when telemetry is reconfigured)."""
    global _cache
    if _cache is None or _cache[0] != generation():
        _cache = (generation(), ScoringMetrics.create(meter()))
    return _cache[1]
