"""The Functions path end to end against the real local stack: Triton, the local AMQP bus, the
activities run for real, and the in-process driver (trigger -> Durable API -> orchestration)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from functions import names
from functions.dead_letters import DeadLetterStore
from functions.payload_store import FilePayloadStore
from functions.runtime import ScoringRuntime
from functions.settings import FunctionsSettings
from qscore.contracts import REQUEST_CONTENT_TYPE, ScoreReply, ScoreRequest, Tensor
from qscore.monitoring import InteractionLog, iter_records
from qscore.registry import Flight, ModelRegistry
from qscore.scoring import RequestPreparer
from qscore.telemetry import InMemoryTelemetry
from qscore_local.functions_host.driver import InProcessDriver


@pytest.fixture
def bus_connection(request: pytest.FixtureRequest) -> Iterator[str]:
    """The shared `bus` fixture when present, else a private LocalBus."""
    try:
        yield request.getfixturevalue("bus").connection_string
        return
    except pytest.FixtureLookupError:
        pass
    from qscore_local.bus.launcher import LocalBus

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
    registry = ModelRegistry(tmp_path / "registry.json")
    preparer = RequestPreparer(specs=triton_client, registry=registry, unknown_model_errors=(ModelNotFound,))
    built = ScoringRuntime(
        settings=settings,
        triton=triton_client,
        preparer=preparer,
        replies=ReplySender(client),
        payloads=FilePayloadStore(settings.payload_dir),
        dead_letters=DeadLetterStore(settings.dead_letter_path),
        servicebus=client,
        registry=registry,
    )
    yield built
    await built.close()


def digits_request(rows: int, version: str | None = None, model: str = "digits") -> str:
    pixels = np.random.default_rng(rows).random((rows, 64), dtype=np.float32) * 16
    request = ScoreRequest(model=model, version=version, inputs={"pixels": Tensor.from_numpy(pixels)})
    return request.model_dump_json(exclude_none=True)


async def send_requests(
    client: Any,
    bodies: dict[str, str],
    session: str,
    *,
    reply_to: str | None,
    properties: dict[str, dict[str, str]] | None = None,
) -> None:
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
                    application_properties=(properties or {}).get(message_id),  # type: ignore[arg-type]
                )
                for message_id, body in bodies.items()
            ]
        )


async def collect_replies(
    client: Any, session: str, count: int, *, traceparents: dict[str, str | None] | None = None
) -> dict[str, ScoreReply]:
    """Replies by request id; `traceparents` (when given) gets each reply's traceparent property."""
    replies: dict[str, ScoreReply] = {}
    async with client.get_queue_receiver("scoring-replies", session_id=session, max_wait_time=10) as receiver:
        while len(replies) < count:
            batch = await receiver.receive_messages(max_message_count=count, max_wait_time=10)
            if not batch:
                break
            for message in batch:
                replies[str(message.correlation_id)] = ScoreReply.model_validate_json(b"".join(message.body))
                if traceparents is not None:
                    found = (message.application_properties or {}).get(b"traceparent")
                    traceparents[str(message.correlation_id)] = found.decode() if found else None
                await receiver.complete_message(message)
    return replies


async def collect_every_reply(
    client: Any, session: str, count: int, *, tail_s: float = 1.0
) -> list[ScoreReply]:
    """Every reply on the session, duplicates included: `count`, then whatever else arrives
    within `tail_s` (the driver has finished, so anything extra would already be queued)."""
    replies: list[ScoreReply] = []
    async with client.get_queue_receiver("scoring-replies", session_id=session, max_wait_time=10) as receiver:
        while True:
            missing = count - len(replies)
            wait_s = 10.0 if missing > 0 else tail_s
            batch = await receiver.receive_messages(max_message_count=max(missing, 1), max_wait_time=wait_s)
            if not batch:
                return replies
            for message in batch:
                replies.append(ScoreReply.model_validate_json(b"".join(message.body)))
                await receiver.complete_message(message)


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


async def test_shadow_flight_scores_twice_and_replies_once(
    functions_app: Any, runtime: ScoringRuntime, tmp_path: Path
) -> None:
    ModelRegistry(tmp_path / "registry.json").set_flight(
        "digits", Flight(mode="shadow", version="1", weight=1.0)
    )
    log_path = tmp_path / "interactions.jsonl"
    interactions = InteractionLog(log_path)
    runtime.interactions = interactions
    session = f"producer-{uuid.uuid4().hex[:8]}"
    bodies = {f"shadow-{i}": digits_request(i + 1) for i in range(4)}
    await send_requests(runtime.servicebus, bodies, session, reply_to="scoring-replies")
    async with (
        InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    assert sum(record.output["shadow_scored"] for record in stats.instances) == 4
    scheduled = [e["Name"] for record in stats.instances for e in record.history if e["EventType"] == 4]
    assert scheduled.index(names.SHADOW_INFER) > scheduled.index(names.SEND_REPLIES)
    replies = await collect_every_reply(runtime.servicebus, session, len(bodies))
    assert sorted(reply.request_id for reply in replies) == sorted(bodies)  # one reply each
    assert {reply.model_version for reply in replies} == {"2"}  # production, never the shadow
    assert await interactions.flush()
    records = list(iter_records(log_path))
    assert sorted((r.route, r.version) for r in records) == [("production", "2")] * 4 + [("shadow", "1")] * 4
    assert {r.request_id for r in records if r.route == "shadow"} == set(bodies)
    assert {r.scored_by for r in records} == {runtime.settings.scored_by}


async def test_spans_join_each_producer_trace(
    functions_app: Any, runtime: ScoringRuntime, telemetry_capture: InMemoryTelemetry
) -> None:
    from qscore.producer.tracing import request_traceparent

    session = f"producer-{uuid.uuid4().hex[:8]}"
    bodies = {f"traced-{i}": digits_request(1) for i in range(3)}
    properties = {}
    for message_id in bodies:
        traceparent = request_traceparent(queue="scoring-requests", request_id=message_id)
        assert traceparent is not None
        properties[message_id] = {"traceparent": traceparent}
    await send_requests(
        runtime.servicebus, bodies, session, reply_to="scoring-replies", properties=properties
    )
    async with (
        InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        await driver.run_until_idle(connection_receiver=receiver)
    traceparents: dict[str, str | None] = {}
    assert set(await collect_replies(runtime.servicebus, session, 3, traceparents=traceparents)) == set(
        bodies
    )
    spans = telemetry_capture.spans.get_finished_spans()
    producers = {
        s.attributes["messaging.message.id"]: s.context
        for s in spans
        if s.name == "qscore.send" and s.attributes
    }
    replies = {s.attributes["messaging.message.id"]: s for s in spans if s.name == "qscore.functions.reply"}
    assert set(replies) == set(bodies)
    for message_id, span in replies.items():
        producer = producers[message_id]
        assert span.parent is not None and span.parent.span_id == producer.span_id
        assert span.context.trace_id == producer.trace_id
        assert [link.context.span_id for link in span.links] == [producer.span_id]
        assert span.attributes["qscore.outcome"] == "replied"
        # The reply message carries the reply span's context: the producer's trace sees it arrive.
        context = span.context
        expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        assert traceparents[message_id] == expected
    (infer,) = [s for s in spans if s.name == "qscore.functions.infer"]
    assert {link.context.span_id for link in infer.links} == {p.span_id for p in producers.values()}
    assert infer.attributes["qscore.model_version"] == "2"
    (send,) = [s for s in spans if s.name == "qscore.functions.send_replies"]
    assert {link.context.span_id for link in send.links} == {s.context.span_id for s in replies.values()}


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
