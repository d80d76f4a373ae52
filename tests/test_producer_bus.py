"""ScoringProducer against the real local Service Bus endpoint, with a small fake worker
(tests/fixtures/producer.py); the demo test runs it against the real worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from azure.servicebus.aio import ServiceBusClient

from qscore import telemetry
from qscore.contracts import REQUEST_CONTENT_TYPE
from qscore.producer import OutcomeKind, OutgoingRequest, ProducerSettings, ScoringProducer
from qscore.telemetry import InMemoryTelemetry
from qscore_local.bus.launcher import BusEndpoint
from tests.fixtures.bus import StartBus
from tests.fixtures.producer import FAKE_LABEL, REPLY_QUEUE, REQUEST_QUEUE, FakeWorker, fake_reply


def _digits_requests(count: int) -> list[OutgoingRequest]:
    rng = np.random.default_rng(0)
    return [
        OutgoingRequest.build(
            "digits", {"pixels": rng.integers(0, 16, (1, 64)).astype(np.float32)}, body_format="json"
        )
        for _ in range(count)
    ]


async def test_score_many_round_trip_with_message_properties(
    producer_bus: BusEndpoint, fake_worker: FakeWorker
) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=20)
    requests = _digits_requests(300)
    async with ScoringProducer(settings=settings) as producer:
        outcomes = await producer.score_many(requests)
    assert [o.request_id for o in outcomes] == [r.request_id for r in requests]
    assert all(o.ok and o.kind is OutcomeKind.REPLIED for o in outcomes)
    assert outcomes[0].reply is not None
    assert outcomes[0].reply.output_arrays()["label"].tolist() == [[FAKE_LABEL]]
    first = fake_worker.seen[requests[0].request_id]
    assert first.message_id == requests[0].request_id
    assert first.reply_to == REPLY_QUEUE
    assert first.reply_to_session_id == settings.session_id
    assert first.content_type == REQUEST_CONTENT_TYPE
    assert producer.stats.replied == 300 and producer.stats.pending == 0


async def test_duplicate_replies_are_dropped(producer_bus: BusEndpoint, fake_worker: FakeWorker) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=20)
    requests = _digits_requests(20)
    fake_worker.replies_for.update({r.request_id: 2 for r in requests})
    async with ScoringProducer(settings=settings) as producer:
        await producer.send(requests)
        outcomes = [outcome async for outcome in producer.replies()]
        for _ in range(50):  # let the second copies arrive
            if producer.stats.duplicates == 20:
                break
            await asyncio.sleep(0.1)
    assert sorted(o.request_id for o in outcomes) == sorted(r.request_id for r in requests)
    assert producer.stats.duplicates == 20 and producer.stats.replied == 20


async def test_unanswered_requests_time_out(producer_bus: BusEndpoint, fake_worker: FakeWorker) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=1.0)
    requests = _digits_requests(4)
    fake_worker.replies_for.update({requests[2].request_id: 0, requests[3].request_id: 0})
    async with ScoringProducer(settings=settings) as producer:
        outcomes = await producer.score_many(requests)
    assert [o.kind for o in outcomes] == [OutcomeKind.REPLIED] * 2 + [OutcomeKind.TIMED_OUT] * 2
    assert producer.stats.timed_out == 2


async def test_two_producers_get_only_their_own_replies(
    producer_bus: BusEndpoint, fake_worker: FakeWorker
) -> None:
    connection = producer_bus.connection_string
    first_settings = ProducerSettings(connection=connection, reply_timeout_s=20)
    second_settings = ProducerSettings(connection=connection, reply_timeout_s=20, binary_tensors=True)
    async with (
        ScoringProducer(settings=first_settings) as first,
        ScoringProducer(settings=second_settings) as second,
    ):
        one, two = await asyncio.gather(
            first.score_many(_digits_requests(50)),
            second.score("digits", {"pixels": np.ones((3, 64), np.float32)}),
        )
    assert all(o.ok for o in one) and two.ok
    assert two.reply is not None and two.reply.output_arrays()["label"].shape == (3, 1)
    assert first.stats.stray == second.stats.stray == 0


async def test_batched_send_splits_large_runs(producer_bus: BusEndpoint, fake_worker: FakeWorker) -> None:
    # ~60 KB per request: a 1 MiB message batch holds about 16, so 100 need several batches.
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=30)
    big = np.random.default_rng(1).random((230, 64), dtype=np.float32)
    requests = [OutgoingRequest.build("digits", {"pixels": big}) for _ in range(100)]
    async with ScoringProducer(settings=settings) as producer:
        outcomes = await producer.score_many(requests)
    assert all(o.ok for o in outcomes)


async def test_oversized_request_is_refused_before_sending(producer_bus: BusEndpoint) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string)
    huge = OutgoingRequest.build("digits", {"pixels": np.ones((5000, 64), np.float32)})
    async with ScoringProducer(settings=settings) as producer:
        with pytest.raises(ValueError, match="larger than the queue's maximum message size"):
            await producer.send([huge])
        assert producer.stats.sent == 0 and producer.pending == 0


async def _answer_one(connection: str) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        receiver = client.get_queue_receiver(REQUEST_QUEUE, max_wait_time=10)
        async with receiver, client.get_queue_sender(REPLY_QUEUE) as sender:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
            await sender.send_messages(fake_reply(message))
            await receiver.complete_message(message)


async def test_producer_carries_on_after_the_bus_restarts(start_bus: StartBus, tmp_path: Path) -> None:
    bus = start_bus(data_dir=tmp_path / "bus")
    assert bus.endpoint is not None
    connection = bus.endpoint.connection_string
    settings = ProducerSettings(connection=connection, reply_timeout_s=30)
    async with ScoringProducer(settings=settings) as producer:
        answer = asyncio.create_task(_answer_one(connection))
        (before,) = await producer.score_many(_digits_requests(1))
        await answer
        await asyncio.to_thread(bus.stop)
        await asyncio.to_thread(bus.start)  # same port and data: clients reconnect
        answer = asyncio.create_task(_answer_one(connection))
        (after,) = await producer.score_many(_digits_requests(1))
        await answer
    assert before.ok and after.ok


async def test_each_request_carries_its_own_traceparent(
    producer_bus: BusEndpoint, fake_worker: FakeWorker, telemetry_capture: InMemoryTelemetry
) -> None:
    settings = ProducerSettings(connection=producer_bus.connection_string, reply_timeout_s=20)
    requests = _digits_requests(3)
    async with ScoringProducer(settings=settings) as producer:
        outcomes = await producer.score_many(requests)
    assert all(o.ok for o in outcomes)
    finished = telemetry_capture.spans.get_finished_spans()
    spans = {(span.attributes or {}).get("messaging.message.id"): span for span in finished}
    for request in requests:
        properties = fake_worker.seen[request.request_id].application_properties or {}
        traceparent = (properties.get(b"traceparent") or properties.get("traceparent") or b"").decode()
        span = spans[request.request_id]
        assert traceparent.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")


async def test_untraced_producer_sends_no_trace_property(
    producer_bus: BusEndpoint, fake_worker: FakeWorker
) -> None:
    telemetry.reset()  # no tracer provider: what a producer without OpenTelemetry set up does
    # JSON both ways: a binary body or reply would carry its own properties (header length, accept)
    settings = ProducerSettings(
        connection=producer_bus.connection_string, reply_timeout_s=20, reply_format="json"
    )
    requests = _digits_requests(1)
    async with ScoringProducer(settings=settings) as producer:
        await producer.score_many(requests)
    assert not fake_worker.seen[requests[0].request_id].application_properties
