"""Where telemetry goes: OTLP, Application Insights (Azure Monitor) and a Prometheus scrape.

Chosen from the environment at `configure` time, any combination at once:
- `OTEL_EXPORTER_OTLP_ENDPOINT` set: spans and metrics over OTLP/gRPC (a collector).
- `APPLICATIONINSIGHTS_CONNECTION_STRING` set: spans, metrics and log records to Application
  Insights through `azure-monitor-opentelemetry-exporter` (its ingestion endpoint comes from
  the connection string's `IngestionEndpoint`).
- `prometheus=True` (the worker): a pull reader whose text the health server serves on /metrics.

Exporters are imported lazily: a process that exports nowhere never loads gRPC or azure-core.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter

OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
APPINSIGHTS_ENV = "APPLICATIONINSIGHTS_CONNECTION_STRING"
METRIC_INTERVAL_ENV = "OTEL_METRIC_EXPORT_INTERVAL"


@dataclass
class Exporters:
    """What `configure` wires into its providers."""

    span_exporters: list[SpanExporter] = field(default_factory=list)
    metric_readers: list[MetricReader] = field(default_factory=list)
    log_exporters: list[Any] = field(default_factory=list)


def _periodic(exporter: Any) -> MetricReader:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    # The reader reads OTEL_METRIC_EXPORT_INTERVAL (ms) itself; 60 s without it.
    return PeriodicExportingMetricReader(exporter)


def otlp(found: Exporters) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    found.span_exporters.append(OTLPSpanExporter())
    found.metric_readers.append(_periodic(OTLPMetricExporter()))


def azure_monitor(found: Exporters, connection_string: str) -> None:
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )

    found.span_exporters.append(AzureMonitorTraceExporter(connection_string=connection_string))
    found.metric_readers.append(_periodic(AzureMonitorMetricExporter(connection_string=connection_string)))
    found.log_exporters.append(AzureMonitorLogExporter(connection_string=connection_string))


def from_environment() -> Exporters:
    found = Exporters()
    if os.environ.get(OTLP_ENDPOINT_ENV):
        otlp(found)
    connection_string = os.environ.get(APPINSIGHTS_ENV)
    if connection_string:
        azure_monitor(found, connection_string)
    return found


def traces_exported() -> bool:
    """Whether `configure` will send spans anywhere (runtimes skip making spans otherwise)."""
    return bool(
        os.environ.get(OTLP_ENDPOINT_ENV)
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get(APPINSIGHTS_ENV)
    )


def log_provider(resource: Resource, exporters: list[Any]) -> Any:
    """A LoggerProvider exporting Python log records (INFO and up) through `exporters`, with a
    handler on the root logger; None without exporters."""
    if not exporters:
        return None
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    for exporter in exporters:
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    handler.set_name("qscore-otel-logs")
    handler.addFilter(_not_from_exporters)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "qscore-otel-logs":
            root.removeHandler(existing)  # reconfigured: the old provider is being shut down
    root.addHandler(handler)
    return provider


# The exporters' own log records (a transmission logged by azure-monitor, an HTTP request by
# azure-core) must not be exported: each export would log, and be exported, again.
_EXPORTER_LOGGERS = ("azure.monitor", "azure.core", "azure.identity", "opentelemetry", "urllib3", "msal")


def _not_from_exporters(record: logging.LogRecord) -> bool:
    return not record.name.startswith(_EXPORTER_LOGGERS)


class PrometheusScrape:
    """A pull reader on a registry of its own; `text()` is the exposition a scrape gets.

    A private registry (not prometheus_client's global one) because `configure` may run more
    than once per process (tests): each configuration serves only its own instruments.
    """

    def __init__(self) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        # target_info carries the resource (service.name, service.instance.id) as one series.
        self.reader = PrometheusMetricReader(registry=self.registry)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    @property
    def content_type(self) -> str:
        from prometheus_client import CONTENT_TYPE_LATEST

        return str(CONTENT_TYPE_LATEST)
