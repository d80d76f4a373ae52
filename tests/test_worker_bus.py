"""The worker end to end against the real local Service Bus endpoint and real Triton.

Each test uses a request queue of its own (`fresh_queue`) and a reply session of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from qscore.contracts import ErrorCode, ReplyStatus
from qscore.inference.testset import DigitsTestSet
from qscore.monitoring.records import iter_records
from qscore.registry import Flight, ModelRegistry
from qscore_local.bus.stats import queue_counts
from tests.fixtures.bad_requests import MAX_MESSAGE_BYTES, UNREACHABLE, bad_requests, case_key
from tests.fixtures.ports import free_port
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _queue_empty(connection: str, queue: str) -> bool:
    counts = (await queue_counts(connection))[queue]
    return counts.active == 0 and counts.locked == 0


async def test_happy_path_scores_the_held_out_digits(
    bus: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    digits_test_set: DigitsTestSet,
) -> None:
    pixels, labels = digits_test_set.pixels, digits_test_set.labels
    requests = [
        OutgoingRequest(
            f"digit-{index}",
            digits_request(pixels[index], binary=index % 2 == 0),
            session_id=replies.session_id,
            properties={"traceparent": TRACEPARENT},
        )
        for index in range(len(labels))
    ]
    await send_requests(bus.connection_string, fresh_queue, requests)
    health_port = free_port()
    settings = worker_settings(request_queue=fresh_queue, health_port=health_port, health_host="127.0.0.1")
    async with running_worker(settings) as state:
        await replies.collect(len(requests), timeout_s=60)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{health_port}/readyz") as response:
                assert response.status == 200, await response.text()
            async with http.get(f"http://127.0.0.1:{health_port}/healthz") as response:
                assert response.status == 200 and json.loads(await response.text())["live"]
        assert state.ready
    assert len(replies.replies) == len(requests)
    assert replies.sessions_seen == {replies.session_id}
    predicted = np.array(
        [int(replies.first(f"digit-{i}").output_arrays()["label"].ravel()[0]) for i in range(len(labels))]
    )
    accuracy = float((predicted == labels).mean())
    assert accuracy >= 0.95, accuracy
    sample = replies.first("digit-0")
    assert (
        sample.status == ReplyStatus.OK and sample.model_version == "2" and sample.scored_by == "test-worker"
    )
    assert sample.output_arrays()["probabilities"].shape == (1, 10)
    assert sample.timings.total_ms >= sample.timings.inference_ms > 0
    assert await _queue_empty(bus.connection_string, fresh_queue)


async def test_bad_input_is_answered_and_only_the_unreachable_are_dead_lettered(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    # Issue 24 changed this contract: a bad request whose caller can be reached gets an error
    # reply with its code (it was dead-lettered); only the unreachable ones are dead-lettered.
    bad = bad_requests(replies.session_id)
    good = OutgoingRequest("good", digits_request(np.zeros((1, 64))), session_id=replies.session_id)
    await send_requests(bus.connection_string, fresh_queue, [*(request for request, _ in bad), good])
    settings = worker_settings(request_queue=fresh_queue, max_message_bytes=MAX_MESSAGE_BYTES)
    answered = {case_key(request): code for request, code in bad if case_key(request) not in UNREACHABLE}
    async with running_worker(settings):
        await replies.collect(len(answered) + 1, timeout_s=30)
        dead = await dead_letters(bus.connection_string, fresh_queue)
    assert set(replies.replies) == {"good", *answered}  # the worker kept going; the bad hear why
    assert replies.first("good").status == ReplyStatus.OK
    for request_id, code in answered.items():
        (reply,) = replies.replies[request_id]
        assert reply.status == ReplyStatus.ERROR and reply.error is not None
        assert reply.error.code == code and reply.error.message, (request_id, reply.error)
    deadline_error = replies.first("integer-deadline").error
    assert deadline_error is not None and "ISO 8601" in deadline_error.message
    assert replies.first("unknown-model").model == "no-such-model"  # the model named, even for a bad one
    assert set(dead) == UNREACHABLE
    for request, code in bad:
        if case_key(request) not in UNREACHABLE:
            continue
        letter = dead[case_key(request)]
        assert letter.reason == str(code), (request.message_id, letter)
        assert letter.description
        assert (letter.delivery_count or 0) <= 1  # judged on its first delivery
    assert "reply_to" in (dead["no-reply-to"].description or "")
    assert await _queue_empty(bus.connection_string, fresh_queue)


async def test_answered_rejections_are_also_kept_when_the_operator_asks(
    bus: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    tmp_path: Path,
) -> None:
    from qscore.monitoring import InteractionLog
    from workers.hooks import WorkerCallbacks

    bad = OutgoingRequest(
        "bad", digits_request(np.zeros((1, 64)), model="no-such-model"), session_id=replies.session_id
    )
    good = OutgoingRequest("good", digits_request(np.zeros((1, 64))), session_id=replies.session_id)
    await send_requests(bus.connection_string, fresh_queue, [bad, good])
    settings = worker_settings(request_queue=fresh_queue, keep_answered_rejections=True)
    log = InteractionLog(tmp_path / "interactions.jsonl")
    async with running_worker(settings, hooks=WorkerCallbacks(interactions=log)):
        await replies.collect(2, timeout_s=30)
        dead = await dead_letters(bus.connection_string, fresh_queue)
    (reply,) = replies.replies["bad"]
    assert reply.error is not None and reply.error.code == ErrorCode.UNKNOWN_MODEL
    assert set(dead) == {"bad"}  # answered AND kept, with its code; the good one completed
    assert dead["bad"].reason == "unknown_model" and dead["bad"].description == reply.error.message
    assert await _queue_empty(bus.connection_string, fresh_queue)
    logged = [
        record for record in iter_records(tmp_path / "interactions.jsonl") if record.request_id == "bad"
    ]
    assert [(record.outcome, record.status) for record in logged] == [("error", "unknown_model")]  # once


async def test_expired_deadline_gets_an_expired_reply_and_is_not_scored(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    future = datetime.now(UTC) + timedelta(minutes=5)
    await send_requests(
        bus.connection_string,
        fresh_queue,
        [
            OutgoingRequest(
                "late", digits_request(np.zeros((1, 64)), deadline=past), session_id=replies.session_id
            ),
            OutgoingRequest(
                "on-time", digits_request(np.zeros((1, 64)), deadline=future), session_id=replies.session_id
            ),
        ],
    )
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        await replies.collect(2, timeout_s=30)
    late = replies.first("late")
    assert late.status == ReplyStatus.ERROR and late.error is not None
    assert late.error.code == ErrorCode.EXPIRED and late.outputs is None
    assert replies.first("on-time").status == ReplyStatus.OK
    assert await _queue_empty(bus.connection_string, fresh_queue)
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)


async def test_shadow_flight_scores_twice_and_replies_once(
    bus: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    digits_test_set: DigitsTestSet,
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path / "registry.json")
    registry.set_flight("digits", Flight(mode="shadow", version="1", weight=1.0))
    log_path = tmp_path / "interactions.jsonl"
    count = 20
    await send_requests(
        bus.connection_string,
        fresh_queue,
        [
            OutgoingRequest(
                f"shadow-{i}", digits_request(digits_test_set.pixels[i]), session_id=replies.session_id
            )
            for i in range(count)
        ],
    )
    # Shadow work is skipped beyond two concurrent shadow batches: a long batch delay gathers the
    # requests into one or two batches however the prefetch window hands them over (a fixed
    # delay: adaptive batching would send each receive's worth at once).
    settings = worker_settings(
        request_queue=fresh_queue,
        registry_path=registry.path,
        interaction_log=log_path,
        max_batch_delay_ms=200,
        adaptive_batching=False,
    )
    async with running_worker(settings):
        await replies.collect(count, timeout_s=30, settle_s=0.5)
    assert {len(found) for found in replies.replies.values()} == {1}
    assert {found[0].model_version for found in replies.replies.values()} == {"2"}
    records = list(iter_records(log_path))
    routes = sorted((record.route, record.version) for record in records)
    assert routes == [("production", "2")] * count + [("shadow", "1")] * count


async def test_interaction_log_records_the_route_and_drift_finds_canary_traffic(
    bus: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    digits_test_set: DigitsTestSet,
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from qscore_cli import app

    registry = ModelRegistry(tmp_path / "registry.json")
    registry.set_flight("digits", Flight(mode="canary", version="1", weight=1.0))
    log_path = tmp_path / "interactions.jsonl"
    canary = [
        OutgoingRequest(
            f"canary-{i}", digits_request(digits_test_set.pixels[i]), session_id=replies.session_id
        )
        for i in range(20)
    ]
    pinned = [
        OutgoingRequest(
            f"pinned-{i}",
            digits_request(digits_test_set.pixels[i], version="2"),
            session_id=replies.session_id,
        )
        for i in range(4)
    ]
    await send_requests(bus.connection_string, fresh_queue, [*canary, *pinned])
    settings = worker_settings(
        request_queue=fresh_queue, registry_path=registry.path, interaction_log=log_path
    )
    async with running_worker(settings):
        await replies.collect(24, timeout_s=30)
    records = {record.request_id: record for record in iter_records(log_path)}
    assert {records[r.message_id or ""].route for r in canary} == {"canary"}
    assert {records[r.message_id or ""].version for r in canary} == {"1"}
    assert {records[r.message_id or ""].route for r in pinned} == {"pinned"}
    drift = CliRunner().invoke(
        app, ["model", "drift", "--log", str(log_path), "--route", "canary", "--window-records", "10"]
    )
    assert drift.exit_code == 0, drift.output
    assert "window(s)" in drift.output
