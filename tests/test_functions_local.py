"""The Functions path end to end against the real local stack: Triton, the local AMQP bus, the
activities run for real, and the in-process driver (trigger -> Durable API -> orchestration)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from functions import names
from functions.runtime import ScoringRuntime
from qscore.monitoring import InteractionLog, iter_records
from qscore.operations import Source
from qscore.registry import Flight, ModelRegistry
from qscore.scoring import RequestPreparer
from qscore.telemetry import InMemoryTelemetry
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.durable import (
    collect_every_reply,
    collect_replies,
    digits_request,
    failure_records,
    send_requests,
)


@pytest.fixture
def runtime(functions_runtime: ScoringRuntime) -> ScoringRuntime:
    return functions_runtime


def assert_history_carries_no_payloads(history: list[dict[str, Any]]) -> None:
    """After validation, the history holds references, ids, reasons and counts: no request
    tensor and no reply body in any activity input (but validation's, the batch) or result."""
    carried = [
        (event["Name"], event.get("Input") or "")
        for event in history
        if event["EventType"] == 4 and event["Name"] != names.VALIDATE
    ]
    carried += [("result", event.get("Result") or "") for event in history if event["EventType"] == 5]
    for name, text in carried:
        for payload in ('"pixels"', '"probabilities"', '"outputs"', '"body"', '"inline": "'):
            assert payload not in text, f"{name} carries {payload}: {text[:200]}"
        assert len(text) < 4096, f"{name} carries {len(text)} bytes"


async def test_batch_end_to_end_through_the_driver(
    functions_app: Any,
    runtime: ScoringRuntime,
    monkeypatch: pytest.MonkeyPatch,
    telemetry_capture: InMemoryTelemetry,
) -> None:
    import qscore.scoring.prepare

    decoded: list[int] = []
    decode = qscore.scoring.prepare.decode_request

    def counting_decode(body: bytes, **kwargs: Any) -> Any:
        decoded.append(len(body))
        return decode(body, **kwargs)

    monkeypatch.setattr(qscore.scoring.prepare, "decode_request", counting_decode)
    # Answered rejections are kept too, so the failure records of the bad requests can be read.
    runtime.settings = dataclasses.replace(runtime.settings, keep_answered_rejections=True)
    session = f"producer-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    bodies = {f"ok-{i}": digits_request(i + 1, version=str(1 + i % 2)) for i in range(4)}
    bad = {f"bad-model-{tag}": digits_request(1, model="no-such-model"), f"bad-json-{tag}": "{not json"}
    no_reply = {f"no-reply-{tag}": digits_request(1)}
    await send_requests(runtime.servicebus, {**bodies, **bad}, session, reply_to="scoring-replies")
    await send_requests(runtime.servicebus, no_reply, None, reply_to=None)
    async with (
        InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert stats.messages == 7
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    every_reply = await collect_every_reply(runtime.servicebus, session, 6)
    # Issue 24: a reachable caller of a bad request hears why (it got no reply before).
    errors = {reply.request_id: reply.error.code for reply in every_reply if reply.error is not None}
    assert errors == {f"bad-model-{tag}": "unknown_model", f"bad-json-{tag}": "invalid_encoding"}
    replies = [reply for reply in every_reply if reply.error is None]
    assert sorted(reply.request_id for reply in replies) == sorted(bodies)
    for reply in replies:
        i = int(reply.request_id.split("-")[1])
        assert reply.status == "ok" and reply.model_version == str(1 + i % 2)
        assert reply.output_arrays()["probabilities"].shape == (i + 1, 10)
    # As the worker dead-letters them: on the failures queue with the contract's reasons (the
    # answered ones because QSCORE_KEEP_ANSWERED_REJECTIONS is on).
    failed = await failure_records(runtime.servicebus, {*bad, *no_reply})
    assert {i: (f.reason, f.source) for i, f in failed.items()} == {
        f"bad-model-{tag}": ("unknown_model", Source.FAILURES),
        f"bad-json-{tag}": ("invalid_encoding", Source.FAILURES),
        f"no-reply-{tag}": ("no_reply_address", Source.FAILURES),
    }
    assert failed[f"bad-json-{tag}"].body == b"{not json"  # the request itself, for resubmission
    assert failed[f"bad-model-{tag}"].reply_to == "scoring-replies"
    # Each request that passed the envelope check was decoded once, by validation only.
    assert len(decoded) == len(bodies) + len(bad)
    for record in stats.instances:
        assert_history_carries_no_payloads(record.history)
    # The stored documents (prepared groups, replies, the batch's copy) were released.
    assert not list(runtime.settings.payload_dir.glob("sha256-*"))
    # The scoring metrics, counted by the core's metrics middleware as in the worker.
    from qscore.telemetry import metrics as metric_names

    by_status: dict[str, int] = {}
    for point in telemetry_capture.metric_points(metric_names.REQUESTS):
        status = point.attributes["status"]  # type: ignore[attr-defined]
        by_status[status] = by_status.get(status, 0) + point.value  # type: ignore[attr-defined]
    assert by_status == {"ok": 4, "error": 2}
    assert sum(p.sum for p in telemetry_capture.metric_points(metric_names.BATCH_SIZE)) == 4  # type: ignore[attr-defined]
    dead_letters = {
        p.attributes["reason"]: p.value  # type: ignore[attr-defined]
        for p in telemetry_capture.metric_points(metric_names.DEAD_LETTERS)
    }
    assert dead_letters == {"unknown_model": 1, "invalid_encoding": 1, "no_reply_address": 1}


async def test_transient_triton_failure_is_retried_then_recorded_as_failure(
    functions_app: Any, runtime: ScoringRuntime
) -> None:
    from qscore.inference import TritonClient

    runtime.triton = TritonClient("127.0.0.1:1", timeout_s=1)  # nothing listens: unavailable
    runtime.preparer = RequestPreparer(
        specs=_SpecsFrom(runtime), registry=ModelRegistry(runtime.settings.payload_dir / "r.json")
    )
    session = f"producer-{uuid.uuid4().hex[:8]}"
    request_id = f"retry-{uuid.uuid4().hex[:8]}"
    await send_requests(
        runtime.servicebus, {request_id: digits_request(2)}, session, reply_to="scoring-replies"
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
    # As the worker's would end in the dead-letter queue: no reply, a failure record.
    assert not await collect_every_reply(runtime.servicebus, session, 0, tail_s=0.5)
    (failed,) = (await failure_records(runtime.servicebus, {request_id})).values()
    assert failed.reason == "inference_failed" and "after its retries" in failed.description
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


async def test_interaction_log_records_each_requests_route(
    functions_app: Any, runtime: ScoringRuntime, tmp_path: Path
) -> None:
    """Canary and pinned traffic is logged as such, not as production (`--route canary` finds it)."""
    ModelRegistry(tmp_path / "registry.json").set_flight(
        "digits", Flight(mode="canary", version="1", weight=1.0)
    )
    log_path = tmp_path / "interactions.jsonl"
    runtime.interactions = InteractionLog(log_path)
    session = f"producer-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    bodies = {f"canary-{tag}": digits_request(1), f"pinned-{tag}": digits_request(1, version="2")}
    await send_requests(runtime.servicebus, bodies, session, reply_to="scoring-replies")
    async with (
        InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        await driver.run_until_idle(connection_receiver=receiver)
    assert len(await collect_every_reply(runtime.servicebus, session, len(bodies))) == len(bodies)
    assert await runtime.interactions.flush()
    routes = {r.request_id: (r.route, r.version) for r in iter_records(log_path)}
    assert routes == {f"canary-{tag}": ("canary", "1"), f"pinned-{tag}": ("pinned", "2")}


async def test_http_requests_are_answered_in_the_output(functions_app: Any, runtime: ScoringRuntime) -> None:
    """HTTP requests (one scored, one rejected) get their replies in the orchestration output,
    read from the stored replies documents; nothing is left in the payload store."""
    import time

    from functions.payloads import InboundMessage
    from functions.trigger import orchestration_input

    tag = uuid.uuid4().hex[:8]
    bodies = {
        f"http-ok-{tag}": digits_request(2),
        f"http-bad-{tag}": digits_request(1, model="no-such-model"),
    }
    messages = [
        InboundMessage.from_body(body.encode(), message_id=mid, received_at=time.time(), origin="http")
        for mid, body in bodies.items()
    ]
    started = await orchestration_input(messages, runtime.payloads, runtime.settings)
    async with InProcessDriver(functions_app, runtime) as driver:
        engine = driver.api.engine
        assert engine is not None
        instance = names.messages_instance_id(bodies)
        engine.start(names.ORCHESTRATOR, instance, json.dumps(started.model_dump(mode="json")))
        record = await engine.wait(instance, 60)
    assert record.status == "Completed", record.error
    replies = record.output["http_replies"]
    assert replies[f"http-ok-{tag}"]["status"] == "ok"
    assert len(replies[f"http-ok-{tag}"]["outputs"]["probabilities"]["data"]) == 20
    assert replies[f"http-bad-{tag}"]["error"]["code"] == "unknown_model"
    assert not list(runtime.settings.payload_dir.glob("sha256-*"))


async def test_the_history_bench_measures_one_real_batch(triton: Any, bus: Any, tmp_path: Path) -> None:
    """`python -m qscore_tools.bench.functions_history` on the same stack, in its short form."""
    from qscore_tools.bench.functions_history import measure

    size = await measure(8, triton.grpc_url, bus.connection_string, tmp_path)
    assert size.messages == 8 and size.total > size.orchestration_input > 0
    assert {names.VALIDATE, names.INFER, names.SEND_REPLIES} <= set(size.activity_inputs)
    assert size.activity_inputs[names.INFER] < 4096  # the group by reference, not the batch
    assert size.store_bytes_by_kind.get("prepared_group", 0) > 0 and size.store_bytes > 0
