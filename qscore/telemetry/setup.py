"""Tracer and meter providers for one qscore process.

`configure(service_name)` is called once at process start (worker, Functions host, producer
CLI). It exports over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise spans and
metrics are recorded by the SDK and dropped, so code can instrument unconditionally.

The providers live in this module rather than only in OpenTelemetry's globals because the
globals can be set once per process: tests swap in an in-memory exporter with
`configure_in_memory()` and go back with `reset()`, any number of times.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

INSTRUMENTATION_NAME = "qscore"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass
class _Providers:
    tracer_provider: trace.TracerProvider | None = None
    meter_provider: metrics.MeterProvider | None = None
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


def _otlp_exporters() -> tuple[SpanExporter, MetricReader]:
    # Imported lazily: the gRPC exporter pulls in protobuf stubs that a process without an
    # OTLP endpoint never needs.
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return OTLPSpanExporter(), PeriodicExportingMetricReader(OTLPMetricExporter())


def _install(tracer_provider: TracerProvider, meter_provider: MeterProvider, *, set_globals: bool) -> None:
    _shutdown_current()
    _providers.tracer_provider = tracer_provider
    _providers.meter_provider = meter_provider
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
) -> None:
    """Set up tracing and metrics for this process; OTLP export when the endpoint env var is set."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    readers = list(metric_readers)
    tracer_provider = TracerProvider(resource=_resource(service_name))
    for exporter in span_exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    if os.environ.get(OTLP_ENDPOINT_ENV):
        span_exporter, metric_reader = _otlp_exporters()
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        readers.append(metric_reader)
    meter_provider = MeterProvider(resource=_resource(service_name), metric_readers=readers)
    _install(tracer_provider, meter_provider, set_globals=True)


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
    for provider in (_providers.tracer_provider, _providers.meter_provider):
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
    _providers.generation += 1


def tracer() -> trace.Tracer:
    """The qscore tracer (a no-op tracer until `configure` runs)."""
    provider = _providers.tracer_provider or trace.get_tracer_provider()
    return provider.get_tracer(INSTRUMENTATION_NAME)


def meter() -> metrics.Meter:
    """The qscore meter (a no-op meter until `configure` runs)."""
    provider = _providers.meter_provider or metrics.get_meter_provider()
    return provider.get_meter(INSTRUMENTATION_NAME)


def generation() -> int:
    """Changes whenever the providers change; caches of instruments compare against it."""
    return _providers.generation


def force_flush(timeout_millis: int = 5000) -> None:
    """Push out pending spans and metrics (call before a process exits)."""
    for provider in (_providers.tracer_provider, _providers.meter_provider):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(timeout_millis)
