"""Tracer and meter providers for one qscore process.

`configure(service_name)` is called once at process start (worker, Functions host, producer
CLI). It exports over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, to Application Insights
when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, and for a Prometheus scrape when asked
(`prometheus=True`, the worker's /metrics); otherwise spans and metrics are recorded by the
SDK and dropped, so code can instrument unconditionally (qscore.telemetry.exporters).

The providers live in this module rather than only in OpenTelemetry's globals because the
globals can be set once per process: tests swap in an in-memory exporter with
`configure_in_memory()` and go back with `reset()`, any number of times.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qscore.telemetry import exporters as _exporters

INSTRUMENTATION_NAME = "qscore"
OTLP_ENDPOINT_ENV = _exporters.OTLP_ENDPOINT_ENV


@dataclass
class _Providers:
    tracer_provider: trace.TracerProvider | None = None
    meter_provider: metrics.MeterProvider | None = None
    logger_provider: Any = None
    prometheus: _exporters.PrometheusScrape | None = None
    generation: int = 0  # bumped on every (re)configuration so cached instruments are rebuilt
    globals_set: bool = False


_providers = _Providers()


@dataclass(frozen=True)
class InMemoryTelemetry:
    """What tests read: finished spans and collected metric points."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def metric_points(self, name: str) -> list[object]:
        """Data points of the metric called `name` (empty when it was never recorded)."""
        data = self.metrics.get_metrics_data()
        points: list[object] = []
        for resource_metrics in data.resource_metrics if data else []:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


def _resource(service_name: str) -> Resource:
    instance = f"{socket.gethostname()}-{os.getpid()}"
    return Resource.create({"service.name": service_name, "service.instance.id": instance})


def _install(
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider,
    *,
    set_globals: bool,
    logger_provider: Any = None,
    prometheus: _exporters.PrometheusScrape | None = None,
) -> None:
    _shutdown_current()
    _providers.tracer_provider = tracer_provider
    _providers.meter_provider = meter_provider
    _providers.logger_provider = logger_provider
    _providers.prometheus = prometheus
    _providers.generation += 1
    if set_globals and not _providers.globals_set:
        # Third-party instrumentation (azure-core tracing, aiohttp) reads the globals.
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _providers.globals_set = True


def configure(
    service_name: str,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    prometheus: bool = False,
    set_globals: bool = True,
) -> None:
    """Set up tracing, metrics and log export for this process from the environment (see module doc).

    `prometheus=True` adds a pull reader; `prometheus_text()` then renders what a scrape gets.
    `set_globals=False` (tests) leaves OpenTelemetry's process-wide providers alone.
    """
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    found = _exporters.from_environment()
    resource = _resource(service_name)
    readers = [*metric_readers, *found.metric_readers]
    scrape = _exporters.PrometheusScrape() if prometheus else None
    if scrape is not None:
        readers.append(scrape.reader)
    tracer_provider = TracerProvider(resource=resource)
    for exporter in span_exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    for exporter in found.span_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    logger_provider = _exporters.log_provider(resource, found.log_exporters)
    _install(
        tracer_provider,
        meter_provider,
        set_globals=set_globals,
        logger_provider=logger_provider,
        prometheus=scrape,
    )


def prometheus_text() -> tuple[bytes, str] | None:
    """The Prometheus exposition of this process's metrics and its content type; None unless
    `configure(..., prometheus=True)` ran. Collecting takes the SDK's locks: call it off the loop."""
    scrape = _providers.prometheus
    if scrape is None:
        return None
    return scrape.text(), scrape.content_type


def configure_in_memory(service_name: str = "qscore-test") -> InMemoryTelemetry:
    """Record spans and metrics in memory (for tests); does not touch OpenTelemetry's globals."""
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider(resource=_resource(service_name))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(resource=_resource(service_name), metric_readers=[reader])
    _install(tracer_provider, meter_provider, set_globals=False)
    return InMemoryTelemetry(spans=spans, metrics=reader)


def _shutdown_current() -> None:
    global_providers = (trace.get_tracer_provider(), metrics.get_meter_provider())
    for provider in (_providers.tracer_provider, _providers.meter_provider, _providers.logger_provider):
        if provider in global_providers:
            continue  # third-party instrumentation may still hold it
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def reset() -> None:
    """Drop the configured providers (flushing them); instrumentation falls back to the globals."""
    _shutdown_current()
    _providers.tracer_provider = None
    _providers.meter_provider = None
    _providers.logger_provider = None
    _providers.prometheus = None
    _providers.generation += 1


_tracer_cache: dict[int, tuple[trace.TracerProvider, trace.Tracer]] = {}


def tracer() -> trace.Tracer:
    """The qscore tracer (a no-op tracer until `configure` runs). Kept per provider: the SDK's
    get_tracer builds a new Tracer (and scope) on every call, which was 6% of a worker's CPU."""
    provider = _providers.tracer_provider or trace.get_tracer_provider()
    cached = _tracer_cache.get(0)
    if cached is not None and cached[0] is provider:
        return cached[1]
    made = provider.get_tracer(INSTRUMENTATION_NAME)
    _tracer_cache[0] = (provider, made)
    return made


def meter() -> metrics.Meter:
    """The qscore meter (a no-op meter until `configure` runs)."""
    provider = _providers.meter_provider or metrics.get_meter_provider()
    return provider.get_meter(INSTRUMENTATION_NAME)


def generation() -> int:
    """Changes whenever the providers change; caches of instruments compare against it."""
    return _providers.generation


_counters: dict[str, tuple[int, metrics.Counter]] = {}


def counter(name: str, *, unit: str, description: str) -> metrics.Counter:
    """The qscore meter's counter `name`, created once per provider generation (so a counter
    made before `configure` or `reset` is not kept recording into the old provider)."""
    cached = _counters.get(name)
    if cached is None or cached[0] != _providers.generation:
        cached = (_providers.generation, meter().create_counter(name, unit=unit, description=description))
        _counters[name] = cached
    return cached[1]


def force_flush(timeout_millis: int = 5000) -> None:
    """Push out pending spans, metrics and log records (call before a process exits)."""
    for provider in (_providers.tracer_provider, _providers.meter_provider, _providers.logger_provider):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(timeout_millis)
