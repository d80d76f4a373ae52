"""OpenTelemetry for qscore: providers, W3C trace context on messages, spans and scoring metrics.

Call `configure(service_name)` once at process start; everything else is safe to call before
or without it (no-op instruments).
"""

from qscore.telemetry.exporters import traces_exported
from qscore.telemetry.metrics import ScoringMetrics, scoring_metrics
from qscore.telemetry.propagation import (
    extract_trace_context,
    inject_trace_context,
    reply_traceparent,
    span_traceparent,
    trace_carrier,
)
from qscore.telemetry.setup import (
    InMemoryTelemetry,
    configure,
    configure_in_memory,
    force_flush,
    meter,
    prometheus_text,
    reset,
    tracer,
)
from qscore.telemetry.spans import batch_span, message_span, producer_span, start_message_span

__all__ = [
    "InMemoryTelemetry",
    "ScoringMetrics",
    "batch_span",
    "configure",
    "configure_in_memory",
    "extract_trace_context",
    "force_flush",
    "inject_trace_context",
    "message_span",
    "meter",
    "producer_span",
    "prometheus_text",
    "reply_traceparent",
    "reset",
    "scoring_metrics",
    "span_traceparent",
    "start_message_span",
    "trace_carrier",
    "tracer",
    "traces_exported",
]
