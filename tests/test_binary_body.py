"""The binary form through the real parts: the producer library (binary by default, asking for
binary replies) -> the local bus -> the worker -> Triton -> a binary reply; and the same request
through the Functions app (trigger -> orchestration -> activities, in process). Both runtimes
must answer it alike, with the outputs Triton gives the same rows directly."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import numpy as np
from azure.servicebus.aio import ServiceBusClient

from functions.runtime import ScoringRuntime
from qscore.contracts import (
    BINARY_REPLY_CONTENT_TYPE,
    BINARY_REQUEST_CONTENT_TYPE,
    ScoreReply,
)
from qscore.inference import TritonClient
from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer, request_message
from qscore.producer.outcomes import parse_reply
from qscore.transport import header_length
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.worker import REPLY_QUEUE, WorkerSettingsFactory, running_worker

ROWS = 128


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, (ROWS, 64)).astype(np.float32)


async def _send_binary(
    connection: str, queue: str, request_id: str, session: str, pixels: np.ndarray
) -> None:
    outgoing = OutgoingRequest.build("digits", {"pixels": pixels}, version="2", request_id=request_id)
    message = request_message(
        outgoing, reply_to=REPLY_QUEUE, reply_to_session_id=session, accept=BINARY_REPLY_CONTENT_TYPE
    )
    assert message.content_type == BINARY_REQUEST_CONTENT_TYPE
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages(message)


async def _binary_reply(connection: str, session: str) -> ScoreReply:
    """The one reply on `session`, checked to have come in the binary form."""
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(REPLY_QUEUE, session_id=session, max_wait_time=60) as receiver,
    ):
        (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=60)
        await receiver.complete_message(message)
    assert message.content_type == BINARY_REPLY_CONTENT_TYPE
    length = header_length(message)
    assert length is not None
    body = b"".join(message.body)
    assert body[int(length) :] != b""  # the outputs' raw bytes follow the header
    return parse_reply(body, content_type=message.content_type, header_length=length)


def _assert_scored(reply: ScoreReply | None, direct: dict[str, np.ndarray]) -> None:
    assert reply is not None and reply.status == "ok", reply
    assert reply.model_version == "2"
    assert reply.timings.total_ms >= reply.timings.inference_ms > 0
    outputs = reply.output_arrays()
    assert outputs["probabilities"].shape == (ROWS, 10)
    np.testing.assert_allclose(outputs["probabilities"], direct["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["label"], direct["label"])


async def test_binary_requests_and_replies_through_the_worker_and_the_functions_app(
    bus: Any,
    triton: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    functions_app: Any,
    functions_runtime: ScoringRuntime,
) -> None:
    pixels = _pixels(23)
    async with TritonClient(triton.grpc_url) as client:
        direct = (await client.infer("digits", {"pixels": pixels}, version="2")).outputs

    # The worker: the producer library's defaults, then a hand-built message read off the wire.
    producer_settings = ProducerSettings(
        connection=bus.connection_string, request_queue=fresh_queue, reply_timeout_s=60, coalesce=False
    )
    assert producer_settings.body_format == producer_settings.reply_format == "binary"
    worker_session = f"binary-{uuid.uuid4().hex[:8]}"
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        async with ScoringProducer(settings=producer_settings) as producer:
            outcome = await producer.score("digits", {"pixels": pixels}, version="2")
        assert producer.stats.malformed == 0
        _assert_scored(outcome.reply, direct)
        await _send_binary(bus.connection_string, fresh_queue, "worker-binary", worker_session, pixels)
        from_worker = await _binary_reply(bus.connection_string, worker_session)
    _assert_scored(from_worker, direct)
    assert from_worker.request_id == "worker-binary" and from_worker.scored_by == "test-worker"

    # The Functions app: the same request on its queue, read by the in-process driver.
    functions_runtime.settings = replace(functions_runtime.settings, request_queue=fresh_queue)
    functions_session = f"binary-{uuid.uuid4().hex[:8]}"
    await _send_binary(bus.connection_string, fresh_queue, "functions-binary", functions_session, pixels)
    async with (
        InProcessDriver(functions_app, functions_runtime, max_batch=8, max_wait_s=1) as driver,
        functions_runtime.servicebus.get_queue_receiver(fresh_queue) as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    from_functions = await _binary_reply(bus.connection_string, functions_session)
    _assert_scored(from_functions, direct)
    assert from_functions.request_id == "functions-binary" and from_functions.scored_by == "functions-test"
    assert from_functions.output_arrays()["label"].tolist() == from_worker.output_arrays()["label"].tolist()
