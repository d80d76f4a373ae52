"""Trace context across the queue, spans for messages and batches, and the scoring metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import SpanKind

from qscore import telemetry
from qscore.contracts import ReplyStatus, Timings
from qscore.telemetry import metrics as names
from tests.fixtures.ports import free_port


def _as_sdk_properties(properties: dict[str, str]) -> dict[bytes, bytes]:
    """What azure-servicebus hands back on a received message: bytes keys and values."""
    return {key.encode(): value.encode() for key, value in properties.items()}


def _send_with_trace() -> tuple[dict[str, str], int, int]:
    properties: dict[str, str] = {"other": "kept"}
    with telemetry.producer_span(queue="scoring-requests", message_id="req-1") as span:
        telemetry.inject_trace_context(properties)
        context = span.get_span_context()
    return properties, context.trace_id, context.span_id


def test_injected_traceparent_is_extracted_as_parent(telemetry_capture: telemetry.InMemoryTelemetry) -> None:
    properties, trace_id, span_id = _send_with_trace()
    assert properties["other"] == "kept"
    assert properties["traceparent"].startswith(f"00-{trace_id:032x}-{span_id:016x}-")

    for received in (properties, _as_sdk_properties(properties)):
        with telemetry.message_span("qscore.process", received, message_id="req-1") as span:
            assert span.get_span_context().trace_id == trace_id
        finished = telemetry_capture.spans.get_finished_spans()[-1]
        assert finished.parent is not None and finished.parent.span_id == span_id
        assert finished.kind is SpanKind.CONSUMER
        assert [link.context.span_id for link in finished.links] == [span_id]
        assert finished.attributes is not None
        assert finished.attributes["messaging.message.id"] == "req-1"


def test_extract_accepts_azure_diagnostic_id_and_prefers_traceparent() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    from opentelemetry import trace

    only_diagnostic = telemetry.extract_trace_context({b"Diagnostic-Id": traceparent.encode()})
    assert trace.get_current_span(only_diagnostic).get_span_context().span_id == 0xB7AD6B7169203331
    both = telemetry.extract_trace_context({"Diagnostic-Id": other, "traceparent": traceparent})
    assert trace.get_current_span(both).get_span_context().span_id == 0xB7AD6B7169203331


@pytest.mark.parametrize("properties", [None, {}, {b"traceparent": b"not-a-traceparent"}, {b"x": 1}])
def test_missing_or_bad_traceparent_starts_a_new_trace(
    telemetry_capture: telemetry.InMemoryTelemetry, properties: dict[bytes, object] | None
) -> None:
    with telemetry.message_span("qscore.process", properties) as span:
        assert span.get_span_context().is_valid
    finished = telemetry_capture.spans.get_finished_spans()[-1]
    assert finished.parent is None and not finished.links


def test_batch_span_links_every_request(telemetry_capture: telemetry.InMemoryTelemetry) -> None:
    requests = [
        telemetry.start_message_span("qscore.request", _as_sdk_properties(_send_with_trace()[0]))
        for _ in range(3)
    ]
    with telemetry.batch_span("qscore.infer", requests, attributes={"model": "digits"}) as batch:
        assert batch.get_span_context().is_valid
    for span in requests:
        span.end()
    infer = next(s for s in telemetry_capture.spans.get_finished_spans() if s.name == "qscore.infer")
    assert {link.context.span_id for link in infer.links} == {s.get_span_context().span_id for s in requests}
    assert infer.attributes is not None and infer.attributes["messaging.batch.message_count"] == 3


def test_scoring_metrics_by_model_version_status(telemetry_capture: telemetry.InMemoryTelemetry) -> None:
    metrics = telemetry.scoring_metrics()
    timings = Timings(queue_wait_ms=3.0, batch_wait_ms=2.0, inference_ms=5.0, total_ms=12.0)
    metrics.record_reply("digits", "2", ReplyStatus.OK, timings)
    metrics.record_reply("digits", "2", "ok", timings)
    metrics.record_reply("digits", None, ReplyStatus.ERROR, Timings(total_ms=1.0), error_code="bad_shape")
    metrics.record_batch("digits", "2", 2)
    metrics.record_dead_letter("bad_shape")
    metrics.record_abandon("inference_unavailable")

    requests = {
        (p.attributes["status"], p.attributes["version"]): p.value  # type: ignore[attr-defined]
        for p in telemetry_capture.metric_points(names.REQUESTS)
    }
    assert requests == {("ok", "2"): 2, ("error", ""): 1}
    durations = telemetry_capture.metric_points(names.REQUEST_DURATION)
    by_stage: dict[str, list[tuple[str, int, float]]] = {}
    for p in durations:
        by_stage.setdefault(p.attributes["stage"], []).append(  # type: ignore[attr-defined]
            (p.attributes["version"], p.count, round(p.sum, 6))  # type: ignore[attr-defined]
        )
    # Seconds; the rejected request records only queue wait and total.
    assert by_stage["inference"] == [("2", 2, 0.01)]
    assert sorted(by_stage["total"]) == [("", 1, 0.001), ("2", 2, 0.024)]
    assert sorted(by_stage["queue_wait"]) == [("", 1, 0.0), ("2", 2, 0.006)]
    assert [p.sum for p in telemetry_capture.metric_points(names.BATCH_SIZE)] == [2]  # type: ignore[attr-defined]
    assert [p.value for p in telemetry_capture.metric_points(names.DEAD_LETTERS)] == [1]  # type: ignore[attr-defined]
    assert [p.attributes["reason"] for p in telemetry_capture.metric_points(names.ABANDONS)] == [  # type: ignore[attr-defined]
        "inference_unavailable"
    ]


def test_instrumentation_is_a_no_op_before_configure() -> None:
    telemetry.reset()
    telemetry.scoring_metrics().record_batch("digits", "1", 4)
    with telemetry.message_span("qscore.process", {"traceparent": "garbage"}):
        pass


_PROBE = textwrap.dedent(
    """
    import os, sys
    from qscore import telemetry
    telemetry.configure("probe")
    with telemetry.tracer().start_as_current_span("x"):
        pass
    loaded = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter" in sys.modules
    print("otlp" if loaded else "none", flush=True)
    os._exit(0)  # skip exporter shutdown: nothing listens on the endpoint
    """
)


@pytest.mark.parametrize("endpoint", [False, True])
def test_otlp_exporter_only_when_endpoint_is_set(endpoint: bool) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ("otlp" if endpoint else "none")


def test_in_flight_gauges_follow_the_latest_source(telemetry_capture: telemetry.InMemoryTelemetry) -> None:
    metrics = telemetry.scoring_metrics()
    metrics.observe_in_flight(lambda: 3, lambda: 10)
    metrics.observe_in_flight(lambda: 7, lambda: 20)  # a second worker in this process
    held = telemetry_capture.metric_points(names.IN_FLIGHT)
    limit = telemetry_capture.metric_points(names.IN_FLIGHT_LIMIT)
    assert [p.value for p in held] == [7] and [p.value for p in limit] == [20]  # type: ignore[attr-defined]


def test_a_spans_traceparent_is_what_the_w3c_propagator_writes() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from qscore.telemetry.propagation import span_traceparent

    def propagated(span: trace.Span) -> str | None:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get("traceparent")

    spans = [
        TracerProvider().get_tracer("test").start_span("a"),
        trace.INVALID_SPAN,
        trace.NonRecordingSpan(trace.SpanContext(1, 0, is_remote=False)),
        trace.NonRecordingSpan(trace.SpanContext(2**127, 5, is_remote=True, trace_flags=trace.TraceFlags(1))),
    ]
    for span in spans:
        assert span_traceparent(span) == propagated(span)
