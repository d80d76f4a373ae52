"""Claim-check end to end: real Triton (digit_images ensemble), the local bus, Azurite, the worker.

- a 4 MB PNG sent with the producer library goes by reference, is scored right, and no blob is left;
- every bad reference is answered with an error reply with its `claim_check_*` code;
- with Azurite stopped the worker abandons (retries) and answers once Azurite is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from qscore.claimcheck import CLAIM_CHECK_CONTENT_TYPE, ClaimCheckSettings, ClaimReference, ClaimStore
from qscore.contracts import REQUEST_CONTENT_TYPE, ErrorCode, ReplyStatus, ScoreRequest, Tensor
from qscore.inference.images import IMAGE_INPUT, IMAGE_MODEL, digit_png, image_batch
from qscore.inference.testset import DigitsTestSet
from qscore.producer import ProducerSettings, ScoringProducer
from qscore_local.azurite import AzuriteEndpoint, LocalAzurite
from tests.fixtures.ports import free_port
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    running_worker,
    send_requests,
)
from workers.telemetry import WorkerTelemetry

FOUR_MB_SIDE = 2450  # a noisy PNG of this side is just over 4 MB


@pytest.fixture
def claim_env(azurite: AzuriteEndpoint, monkeypatch: pytest.MonkeyPatch) -> ClaimCheckSettings:
    container = f"claims-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_CONTAINER", container)
    return ClaimCheckSettings(connection=azurite.connection_string, container=container)


async def _blob_names(settings: ClaimCheckSettings, *, wait_for_none_s: float = 5.0) -> list[str]:
    store = ClaimStore(settings)
    try:
        names = await store.names()
        for _ in range(int(wait_for_none_s / 0.1)):  # deleted just after the reply is sent
            if not names:
                break
            await asyncio.sleep(0.1)
            names = await store.names()
        return names
    finally:
        await store.close()


def _producer(bus: Any, claims: ClaimCheckSettings) -> ScoringProducer:
    return ScoringProducer(
        settings=ProducerSettings(connection=bus.connection_string, reply_timeout_s=60), claim_check=claims
    )


async def test_a_4mb_image_goes_by_reference_and_is_scored_right(
    bus: Any,
    worker_settings: WorkerSettingsFactory,
    claim_env: ClaimCheckSettings,
    digits_test_set: DigitsTestSet,
) -> None:
    index = 3
    png = digit_png(digits_test_set.pixels[index], side=FOUR_MB_SIDE, seed=index)
    assert len(png) > 4_000_000
    async with running_worker(worker_settings()), _producer(bus, claim_env) as producer:
        outcome = await producer.score(IMAGE_MODEL, {IMAGE_INPUT: image_batch([png])})
        assert producer.claims.sent_by_reference == 1
    assert outcome.reply is not None and outcome.reply.status == ReplyStatus.OK, outcome
    label = int(outcome.reply.output_arrays()["label"].ravel()[0])
    assert label == int(digits_test_set.labels[index])
    assert await _blob_names(claim_env) == []


def _reference_message(message_id: str, reference: bytes, session: str) -> OutgoingRequest:
    return OutgoingRequest(message_id, reference, session_id=session, content_type=CLAIM_CHECK_CONTENT_TYPE)


async def test_every_bad_reference_is_answered_with_its_reason(
    bus: Any, worker_settings: WorkerSettingsFactory, claim_env: ClaimCheckSettings, fresh_queue: str
) -> None:
    store = ClaimStore(claim_env)
    body = (
        ScoreRequest(model=IMAGE_MODEL, inputs={IMAGE_INPUT: Tensor.from_numpy(image_batch([b"x" * 1000]))})
        .model_dump_json()
        .encode()
    )
    try:
        good = await store.put("requests/shared", body, REQUEST_CONTENT_TYPE)
        huge = good.model_copy(update={"size": 17 << 20})
    finally:
        await store.close()
    cases = {
        "invalid": (b'{"claim_check": {}}', ErrorCode.CLAIM_CHECK_INVALID),
        "container": (
            good.model_copy(update={"container": "other-container"}),
            ErrorCode.CLAIM_CHECK_WRONG_CONTAINER,
        ),
        "missing": (
            good.model_copy(update={"blob": "requests/never-uploaded"}),
            ErrorCode.CLAIM_CHECK_MISSING,
        ),
        "size": (good.model_copy(update={"size": good.size + 1}), ErrorCode.CLAIM_CHECK_MISMATCH),
        "hash": (good.model_copy(update={"sha256": "f" * 64}), ErrorCode.CLAIM_CHECK_MISMATCH),
        "over-limit": (huge, ErrorCode.CLAIM_CHECK_TOO_LARGE),
    }
    replies = ReplyCollector(bus.connection_string)
    messages = [
        _reference_message(
            name,
            reference
            if isinstance(reference, bytes)
            else ClaimReference(claim_check=reference, model=IMAGE_MODEL).body(),
            replies.session_id,
        )
        for name, (reference, _) in cases.items()
    ]
    await send_requests(bus.connection_string, fresh_queue, messages)
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        await replies.collect(len(cases), timeout_s=30)
        dead = await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
    await replies.close()
    # Issue 24: each caller hears why (these were dead-lettered before); nothing is dead-lettered.
    errors = {name: [reply.error for reply in got] for name, got in replies.replies.items()}
    assert {name: [e.code if e else None for e in got] for name, got in errors.items()} == {
        name: [code] for name, (_, code) in cases.items()
    }
    assert all(got[0] is not None and got[0].message for got in errors.values())
    assert dead == {}


class CountingTelemetry(WorkerTelemetry):
    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.abandons: list[str] = []

    def abandoned(self, reason: str) -> None:
        self.abandons.append(reason)
        super().abandoned(reason)


@contextlib.asynccontextmanager
async def _azurite_at(port: int, location: Path) -> AsyncIterator[LocalAzurite]:
    server = LocalAzurite(port=port, location=location)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_stopped_azurite_causes_retries_not_losses(
    bus: Any,
    worker_settings: WorkerSettingsFactory,
    fresh_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    digits_test_set: DigitsTestSet,
) -> None:
    port, location = free_port(), tmp_path / "azurite"
    from qscore_local.azurite import connection_string

    claims = ClaimCheckSettings(
        connection=connection_string("127.0.0.1", port), container="claims", threshold_bytes=1000
    )
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", claims.connection or "")
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_CONTAINER", claims.container)
    png = digit_png(digits_test_set.pixels[0], side=200, seed=0)
    producer = ScoringProducer(
        settings=ProducerSettings(
            connection=bus.connection_string, request_queue=fresh_queue, reply_timeout_s=60
        ),
        claim_check=claims,
    )
    telemetry = CountingTelemetry()
    async with producer:
        async with _azurite_at(port, location):  # up while the producer uploads
            (request_id,) = await producer.send([_image_request(png)])
        async with running_worker(worker_settings(request_queue=fresh_queue), telemetry=telemetry):
            for _ in range(150):
                if telemetry.abandons:
                    break
                await asyncio.sleep(0.2)
            assert telemetry.abandons, "the worker should abandon while storage is down"
            async with _azurite_at(port, location):  # back, with the same data
                outcome = await anext(producer.replies())
    assert outcome.request_id == request_id and outcome.reply is not None
    assert outcome.reply.status == ReplyStatus.OK
    assert int(outcome.reply.output_arrays()["label"].ravel()[0]) == int(digits_test_set.labels[0])
    assert await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2) == {}


def _image_request(png: bytes) -> Any:
    from qscore.producer import OutgoingRequest as ProducerRequest

    return ProducerRequest.build(IMAGE_MODEL, {IMAGE_INPUT: image_batch([png])})


async def test_a_reply_over_the_threshold_goes_by_reference_and_the_producer_resolves_it(
    bus: Any,
    worker_settings: WorkerSettingsFactory,
    claim_env: ClaimCheckSettings,
    monkeypatch: pytest.MonkeyPatch,
    digits_test_set: DigitsTestSet,
    fresh_queue: str,
) -> None:
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_THRESHOLD_BYTES", "200")  # every reply is larger
    png = digit_png(digits_test_set.pixels[7], side=64, seed=7)
    producer = ScoringProducer(
        settings=ProducerSettings(
            connection=bus.connection_string, request_queue=fresh_queue, reply_timeout_s=60
        ),
        claim_check=claim_env,  # its own threshold (192 KiB): the request goes inline
    )
    async with running_worker(worker_settings(request_queue=fresh_queue)), producer:
        outcome = await producer.score(IMAGE_MODEL, {IMAGE_INPUT: image_batch([png])})
        assert (producer.claims.sent_by_reference, producer.claims.replies_by_reference) == (0, 1)
    assert outcome.reply is not None and outcome.reply.status == ReplyStatus.OK, outcome
    assert int(outcome.reply.output_arrays()["label"].ravel()[0]) == int(digits_test_set.labels[7])
    assert await _blob_names(claim_env) == []  # the producer deleted the reply's blob once read
