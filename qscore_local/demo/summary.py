"""Accumulate reply outcomes into the demo's summary; render it as Rich tables or JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qscore.producer import OutcomeKind, ProducerStats, ReplyOutcome

STAGES = ("end_to_end", "queue_wait", "batch_wait", "inference", "total")


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
        return cls(len(values), float(p50), float(p95), float(p99), float(max(values)))


@dataclass
class DemoSummary:
    requests: int
    replies: int
    ok: int
    errors: dict[str, int]
    timed_out: int
    duplicates: int
    dead_lettered: int | None
    accuracy: float | None
    scored_rows: int
    elapsed_s: float
    throughput_rps: float
    latency_ms: dict[str, Percentiles]
    triton_batch_sizes: dict[int, int]
    model_versions: dict[str, int]
    workers: int
    run_dir: str
    # Claim-check: requests whose body went through Blob Storage instead of the queue, and bytes.
    by_reference: int = 0
    bytes_by_reference: int = 0
    interaction_log_url: str | None = None  # where the workers' Blob interaction log is

    @property
    def all_answered(self) -> bool:
        return self.replies == self.requests and self.timed_out == 0

    def to_json(self) -> str:
        document = asdict(self)
        document["triton_batch_sizes"] = {str(k): v for k, v in self.triton_batch_sizes.items()}
        return json.dumps(document, indent=2, sort_keys=True)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")


@dataclass
class SummaryBuilder:
    """Fed one outcome at a time while the demo runs (so no reply bodies pile up)."""

    labels_by_request: dict[str, np.ndarray]
    latencies: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    errors: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    replies: int = 0
    ok: int = 0
    timed_out: int = 0
    correct_rows: int = 0
    scored_rows: int = 0
    # The model's predicted-class output (its config's qscore.predicted_class_output); no
    # accuracy without one.
    class_output: str | None = None
    by_reference: tuple[int, int] = (0, 0)

    def add(self, outcome: ReplyOutcome) -> None:
        labels = self.labels_by_request.pop(outcome.request_id, None)
        if outcome.kind is OutcomeKind.TIMED_OUT or outcome.reply is None:
            self.timed_out += 1
            return
        reply = outcome.reply
        self.replies += 1
        self.latencies["end_to_end"].append(outcome.latency_ms)
        if not outcome.ok:
            self.errors[str(reply.error.code) if reply.error else "unknown"] += 1
            return
        self.ok += 1
        self.versions[reply.model_version or "?"] += 1
        timings = reply.timings
        self.latencies["queue_wait"].append(timings.queue_wait_ms)
        self.latencies["batch_wait"].append(timings.batch_wait_ms)
        self.latencies["inference"].append(timings.inference_ms)
        self.latencies["total"].append(timings.total_ms)
        outputs = reply.outputs or {}
        class_output = self.class_output or _class_output_by_shape(outputs)
        if labels is not None and class_output in outputs:
            predicted = outputs[class_output].to_numpy().reshape(-1)
            self.scored_rows += len(labels)
            if predicted.shape == labels.shape:
                self.correct_rows += int(np.sum(predicted == labels))

    def build(
        self,
        *,
        requests: int,
        stats: ProducerStats,
        elapsed_s: float,
        dead_lettered: int | None,
        triton_batch_sizes: dict[int, int],
        workers: int,
        run_dir: Path,
    ) -> DemoSummary:
        return DemoSummary(
            requests=requests,
            replies=self.replies,
            ok=self.ok,
            errors=dict(self.errors),
            timed_out=self.timed_out,
            duplicates=stats.duplicates,
            dead_lettered=dead_lettered,
            accuracy=self.correct_rows / self.scored_rows if self.scored_rows else None,
            scored_rows=self.scored_rows,
            elapsed_s=elapsed_s,
            throughput_rps=self.replies / elapsed_s if elapsed_s > 0 else 0.0,
            latency_ms={stage: Percentiles.of(values) for stage, values in self.latencies.items()},
            triton_batch_sizes=triton_batch_sizes,
            model_versions=dict(self.versions),
            workers=workers,
            run_dir=str(run_dir),
            by_reference=self.by_reference[0],
            bytes_by_reference=self.by_reference[1],
        )


def _class_output_by_shape(outputs: dict[str, Any]) -> str | None:
    """Without the config's word: the one integer output with one value per row, if exactly one."""
    candidates = [
        name
        for name, tensor in outputs.items()
        if tensor.datatype.startswith(("INT", "UINT")) and len(tensor.shape) == 2 and tensor.shape[1] == 1
    ]
    return candidates[0] if len(candidates) == 1 else None


def batch_size_distribution(statistics: dict[str, Any], model: str) -> dict[int, int]:
    """Executions per batch size for `model` (all versions) from Triton's statistics JSON.

    Triton counts one `compute_infer` per model execution; int64 fields arrive as strings.
    """
    executions: Counter[int] = Counter()
    for model_stats in statistics.get("model_stats", []):
        if model_stats.get("name") != model:
            continue
        for batch in model_stats.get("batch_stats", []):
            count = int((batch.get("compute_infer") or {}).get("count", 0))
            if count:
                executions[int(batch.get("batch_size", 0))] += count
    return dict(sorted(executions.items()))
