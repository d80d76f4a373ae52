"""Read Triton's Prometheus metrics (the `/metrics` endpoint) into numbers.

Batching shows as `nv_inference_exec_count` (model executions) well below
`nv_inference_request_success` (requests served). There is no `nv_inference_request_count`.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from dataclasses import dataclass

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class BatchingCounters:
    """Per-model counters showing whether Triton batched requests together."""

    request_success: float  # requests answered
    inference_count: float  # samples inferred (a request of batch 8 counts 8)
    exec_count: float  # model executions (one per formed batch)

    @property
    def requests_per_execution(self) -> float:
        return self.request_success / self.exec_count if self.exec_count else 0.0


def parse_metrics(text: str) -> list[MetricSample]:
    """Parse Prometheus text exposition format (comments and malformed lines are skipped)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        samples.append(MetricSample(match["name"], labels, value))
    return samples


def metric_total(samples: list[MetricSample], name: str, **labels: str) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def batching_counters(
    samples: list[MetricSample], model: str, version: str | None = None
) -> BatchingCounters:
    labels = {"model": model} | ({"version": version} if version is not None else {})
    return BatchingCounters(
        request_success=metric_total(samples, "nv_inference_request_success", **labels),
        inference_count=metric_total(samples, "nv_inference_count", **labels),
        exec_count=metric_total(samples, "nv_inference_exec_count", **labels),
    )


def _fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


async def scrape_metrics(metrics_url: str, timeout_s: float = 5.0) -> list[MetricSample]:
    """Fetch and parse a metrics endpoint (blocking I/O runs in a thread)."""
    return parse_metrics(await asyncio.to_thread(_fetch, metrics_url, timeout_s))
