"""Trace context through the real azure-servicebus SDK and the local AMQP endpoint."""

from __future__ import annotations

from uuid import UUID

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from qscore import telemetry
from qscore_local.bus.launcher import BusEndpoint


async def test_traceparent_survives_the_queue(
    bus: BusEndpoint, fresh_queue: str, telemetry_capture: telemetry.InMemoryTelemetry
) -> None:
    properties: dict[str | bytes, int | float | bytes | bool | str | UUID] = {"tenant": "t1"}
    with telemetry.producer_span(queue=fresh_queue, message_id="trace-1") as producer:
        telemetry.inject_trace_context(properties)
    message = ServiceBusMessage(b"{}", message_id="trace-1", application_properties=properties)

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages(message)
        async with client.get_queue_receiver(fresh_queue, max_wait_time=10) as receiver:
            (received,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
            await receiver.complete_message(received)

    assert received.application_properties is not None
    # What the SDK hands back (bytes keys) is what the worker passes in, untouched.
    with telemetry.message_span("qscore.process", received.application_properties, message_id="trace-1"):
        pass
    span = telemetry_capture.spans.get_finished_spans()[-1]
    expected = producer.get_span_context()
    assert span.context is not None and span.context.trace_id == expected.trace_id
    assert span.parent is not None and span.parent.span_id == expected.span_id
