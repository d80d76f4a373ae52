"""Claim-check through the Functions app (in-process host): real Triton, the local bus, Azurite.

A 4 MB image by reference is fetched in the trigger, scored by the activities and replied (the
reply by reference too, as the worker sends a reply over the threshold); both blobs are gone
afterwards. A reference to a missing blob gets the worker's answer (an error reply
`claim_check_missing`; with QSCORE_KEEP_ANSWERED_REJECTIONS also on the failures queue). The
payload store in Blob keeps a batch too large for the Durable history.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from functions.payload_store import BlobPayloadStore, payload_store_for
from functions.payloads import OrchestrationInput
from functions.runtime import ScoringRuntime
from functions.settings import FunctionsSettings
from qscore.claimcheck import CLAIM_CHECK_CONTENT_TYPE, ClaimCheckSettings, ClaimReference, ClaimStore
from qscore.claimcheck.replies import ReplyClaims
from qscore.contracts import ReplyStatus, ScoreReply
from qscore.inference.images import IMAGE_INPUT, IMAGE_MODEL, digit_png, image_batch
from qscore.inference.testset import DigitsTestSet
from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer
from qscore.producer.claims import ProducerClaims
from qscore.registry import ModelRegistry
from qscore.scoring import RequestPreparer
from qscore_local.azurite import AzuriteEndpoint
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.durable import failure_records

FOUR_MB_SIDE = 2450
REPLY_THRESHOLD_BYTES = 64


async def _read_reply(client: Any, session: str, claims: ProducerClaims) -> ScoreReply:
    """The one reply on `session`, fetched (and its blob deleted) when it came by reference."""
    try:
        async with client.get_queue_receiver(
            "scoring-replies", session_id=session, max_wait_time=10
        ) as receiver:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
            body = await claims.check_out_reply(message.content_type, b"".join(message.body))
            await receiver.complete_message(message)
    finally:
        await claims.close()
    return ScoreReply.model_validate_json(body)


@pytest.fixture
async def blob_runtime(
    triton: Any,
    bus: Any,
    functions_settings: FunctionsSettings,
    azurite: AzuriteEndpoint,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[ScoringRuntime, ClaimCheckSettings]]:
    from azure.servicebus.aio import ServiceBusClient

    from qscore.inference import ModelNotFound, TritonClient
    from qscore.transport import ReplySender
    from qscore.transport.failures import FailureQueue

    claims = ClaimCheckSettings(
        connection=azurite.connection_string, container=f"claims-{uuid.uuid4().hex[:8]}"
    )
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("QSCORE_CLAIM_CHECK_CONTAINER", claims.container)
    monkeypatch.setenv("QSCORE_FUNCTIONS_PAYLOAD_CONTAINER", f"payloads-{uuid.uuid4().hex[:8]}")
    settings = replace(
        functions_settings,
        triton_url=triton.grpc_url,
        connection=bus.connection_string,
        keep_answered_rejections=True,  # the failure record of the missing blob is read below
    )
    triton_client = TritonClient(triton.grpc_url)
    client = ServiceBusClient.from_connection_string(bus.connection_string)
    registry = ModelRegistry(tmp_path / "registry.json")
    payloads = payload_store_for(settings.payload_dir)
    assert isinstance(payloads, BlobPayloadStore)
    built = ScoringRuntime(
        settings=settings,
        triton=triton_client,
        preparer=RequestPreparer(
            specs=triton_client, registry=registry, unknown_model_errors=(ModelNotFound,)
        ),
        # A threshold every reply passes: the test's replies go by reference too.
        replies=ReplySender(
            client, claims=ReplyClaims(replace(claims, threshold_bytes=REPLY_THRESHOLD_BYTES))
        ),
        payloads=payloads,
        failures=FailureQueue(client, settings.failures_queue),
        servicebus=client,
        registry=registry,
    )
    yield built, claims
    await built.close()
    await payloads.close()


async def test_a_4mb_image_by_reference_is_scored_by_the_functions_app(
    functions_app: Any,
    bus: Any,
    blob_runtime: tuple[ScoringRuntime, ClaimCheckSettings],
    digits_test_set: DigitsTestSet,
) -> None:
    runtime, claims = blob_runtime
    index = 5
    png = digit_png(digits_test_set.pixels[index], side=FOUR_MB_SIDE, seed=index)
    assert len(png) > 4_000_000
    image = OutgoingRequest.build(IMAGE_MODEL, {IMAGE_INPUT: image_batch([png])})
    store = ClaimStore(claims)
    try:
        missing = await store.put("requests/gone", b"{}", "application/vnd.qscore.request.v1+json")
        await store.delete("requests/gone")
        producer = ScoringProducer(
            settings=ProducerSettings(connection=bus.connection_string, reply_timeout_s=60),
            claim_check=claims,
        )
        async with producer:
            await producer.send([image])
            other_session = f"fn-missing-{uuid.uuid4().hex[:8]}"
            missing_id = f"missing-blob-{uuid.uuid4().hex[:8]}"
            reference = ClaimReference(claim_check=missing)
            await _send_reference(bus.connection_string, other_session, reference, missing_id)
            async with (
                InProcessDriver(functions_app, runtime, max_batch=16, max_wait_s=2) as driver,
                runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
            ):
                stats = await driver.run_until_idle(connection_receiver=receiver)
            assert all(r.status == "Completed" for r in stats.instances), [r.error for r in stats.instances]
            outcome = await anext(producer.replies())
        assert outcome.reply is not None and outcome.reply.status == ReplyStatus.OK, outcome
        assert int(outcome.reply.output_arrays()["label"].ravel()[0]) == int(digits_test_set.labels[index])
        # The reply came by reference (the producer fetched it, then deleted its blob); the
        # trigger deleted the request's claim once the batch was stored.
        assert runtime.replies._claims is not None and runtime.replies._claims.offloaded >= 1
        # Issue 24: its caller can be reached, so it hears why (and the operator keeps it too);
        # over this test's reply threshold, the error reply went by reference as well.
        answer = await _read_reply(runtime.servicebus, other_session, ProducerClaims(claims))
        assert answer.request_id == missing_id and answer.error is not None
        assert answer.error.code == "claim_check_missing"
        assert await store.names() == []
        failed = await failure_records(runtime.servicebus, {missing_id})
        assert failed[missing_id].reason == "claim_check_missing"
        # What the orchestrations derived (prepared groups, replies) was released from Blob;
        # only the trigger's batches stay (they are the input of a Failed instance's restart).
        batches = {
            OrchestrationInput.model_validate_json(r.input_json or "").batch.ref for r in stats.instances
        }
        assert isinstance(runtime.payloads, BlobPayloadStore)
        left = [
            blob.name async for blob in runtime.payloads._container.list_blobs(name_starts_with="payloads/")
        ]
        assert {name.removeprefix("payloads/") for name in left} <= batches - {None}
    finally:
        await store.close()


async def _send_reference(connection: str, session: str, reference: ClaimReference, message_id: str) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender("scoring-requests") as sender,
    ):
        await sender.send_messages(
            ServiceBusMessage(
                reference.body(),
                message_id=message_id,
                reply_to="scoring-replies",
                reply_to_session_id=session,
                content_type=CLAIM_CHECK_CONTENT_TYPE,
            )
        )


@pytest.mark.parametrize("configured", [True, False])
async def test_the_functions_runtime_offloads_replies_when_claim_check_is_configured(
    functions_settings: FunctionsSettings, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    from functions.runtime import build_runtime

    for name in ("QSCORE_BLOB_CONNECTION", "QSCORE_BLOB_ACCOUNT_URL", "QSCORE_FUNCTIONS_PAYLOAD_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    if configured:
        monkeypatch.setenv("QSCORE_BLOB_ACCOUNT_URL", "https://account.blob.core.windows.net")
    runtime = build_runtime(
        replace(
            functions_settings,
            connection="Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=v",
        )
    )
    try:
        assert (runtime.replies._claims is not None) is configured
    finally:
        await runtime.close()
