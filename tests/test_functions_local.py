"""The Functions path end to end against the real local stack: Triton, the local AMQP bus, the
activities run for real, and the in-process driver (trigger -> Durable API -> orchestration)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from functions.dead_letters import DeadLetterStore
from functions.local.driver import InProcessDriver
from functions.payload_store import FilePayloadStore
from functions.runtime import ScoringRuntime
from functions.settings import FunctionsSettings
from qscore.contracts import REQUEST_CONTENT_TYPE, ScoreReply, ScoreRequest, Tensor
from qscore.registry import ModelRegistry
from qscore.scoring import RequestPreparer


@pytest.fixture
def bus_connection(request: pytest.FixtureRequest) -> Iterator[str]:
    """The shared `bus` fixture when present, else a private LocalBus."""
    try:
        yield request.getfixturevalue("bus").connection_string
        return
    except pytest.FixtureLookupError:
        pass
    from qscore.bus.launcher import LocalBus

    with LocalBus() as endpoint:
        yield endpoint.connection_string


@pytest.fixture
async def runtime(
    triton: Any, bus_connection: str, functions_settings: FunctionsSettings, tmp_path: Any
) -> AsyncIterator[ScoringRuntime]:
    from azure.servicebus.aio import ServiceBusClient

    from qscore.inference import ModelNotFound, TritonClient
    from qscore.transport import ReplySender

    settings = replace(functions_settings, triton_url=triton.grpc_url, connection=bus_connection)
    triton_client = TritonClient(triton.grpc_url)
    client = ServiceBusClient.from_connection_string(bus_connection)
    preparer = RequestPreparer(
        specs=triton_client,
        registry=ModelRegistry(tmp_path / "registry.json"),
        unknown_model_errors=(ModelNotFound,),
    )
    built = ScoringRuntime(
        settings=settings,
        triton=triton_client,
        preparer=preparer,
        replies=ReplySender(client),
        payloads=FilePayloadStore(settings.payload_dir),
        dead_letters=DeadLetterStore(settings.dead_letter_path),
        servicebus=client,
    )
    yield built
    await built.close()


def digits_request(rows: int, version: str | None = None, model: str = "digits") -> str:
    pixels = np.random.default_rng(rows).random((rows, 64), dtype=np.float32) * 16
    request = ScoreRequest(model=model, version=version, inputs={"pixels": Tensor.from_numpy(pixels)})
    return request.model_dump_json(exclude_none=True)


async def send_requests(client: Any, bodies: dict[str, str], session: str, *, reply_to: str | None) -> None:
    from azure.servicebus import ServiceBusMessage

    async with client.get_queue_sender("scoring-requests") as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(
                    body,
                    message_id=message_id,
                    reply_to=reply_to,
                    reply_to_session_id=session,
                    content_type=REQUEST_CONTENT_TYPE,
                )
                for message_id, body in bodies.items()
            ]
        )


async def collect_replies(client: Any, session: str, count: int) -> dict[str, ScoreReply]:
    replies: dict[str, ScoreReply] = {}
    async with client.get_queue_receiver("scoring-replies", session_id=session, max_wait_time=10) as receiver:
        while len(replies) < count:
            batch = await receiver.receive_messages(max_message_count=count, max_wait_time=10)
            if not batch:
                break
            for message in batch:
                replies[str(message.correlation_id)] = ScoreReply.model_validate_json(b"".join(message.body))
                await receiver.complete_message(message)
    return replies


async def test_batch_end_to_end_through_the_driver(functions_app: Any, runtime: ScoringRuntime) -> None:
    session = f"producer-{uuid.uuid4().hex[:8]}"
    bodies = {f"ok-{i}": digits_request(i + 1, version=str(1 + i % 2)) for i in range(4)}
    bodies["bad-model"] = digits_request(1, model="no-such-model")
    bodies["bad-json"] = "{not json"
    no_reply = {"no-reply": digits_request(1)}
    await send_requests(runtime.servicebus, bodies, session, reply_to="scoring-replies")
    await send_requests(runtime.servicebus, no_reply, session, reply_to=None)
    async with (
        InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert stats.messages == 7
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    replies = await collect_replies(runtime.servicebus, session, 6)
    assert set(replies) == set(bodies)
    for i in range(4):
        reply = replies[f"ok-{i}"]
        assert reply.status == "ok" and reply.model_version == str(1 + i % 2)
        assert reply.output_arrays()["probabilities"].shape == (i + 1, 10)
    assert replies["bad-model"].error is not None and replies["bad-model"].error.code == "unknown_model"
    assert replies["bad-json"].error is not None and replies["bad-json"].error.code == "invalid_encoding"
    dead = await runtime.dead_letters.read()
    assert [(d["request_id"], d["code"]) for d in dead] == [("no-reply", "no_reply_address")]


async def test_transient_triton_failure_is_retried_then_replied_as_error(
    functions_app: Any, runtime: ScoringRuntime
) -> None:
    from qscore.inference import TritonClient

    runtime.triton = TritonClient("127.0.0.1:1", timeout_s=1)  # nothing listens: unavailable
    runtime.preparer = RequestPreparer(
        specs=_SpecsFrom(runtime), registry=ModelRegistry(runtime.settings.payload_dir / "r.json")
    )
    session = f"producer-{uuid.uuid4().hex[:8]}"
    await send_requests(
        runtime.servicebus, {"retry-1": digits_request(2)}, session, reply_to="scoring-replies"
    )
    async with (
        InProcessDriver(functions_app, runtime, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        record = await driver.run_batch(receiver)
    assert record is not None and record.status == "Completed"
    failures = [e for e in record.history if e["EventType"] == 6]
    assert len(failures) == runtime.settings.retry.max_attempts
    assert record.output["failed_groups"] == 1
    reply = (await collect_replies(runtime.servicebus, session, 1))["retry-1"]
    assert reply.error is not None and reply.error.code == "inference_failed"
    assert json.dumps(record.output)  # the output is plain JSON


class _SpecsFrom:
    """Specs from the real server (fetched once before Triton is 'lost'), so validation passes."""

    def __init__(self, runtime: ScoringRuntime) -> None:
        self._runtime = runtime

    async def model_spec(self, model: str, version: str = "") -> Any:
        from qscore.contracts import ModelSpec, TensorSpec

        return ModelSpec(
            name=model,
            versions=["1", "2"],
            max_batch_size=64,
            inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64])],
            outputs=[],
        )
