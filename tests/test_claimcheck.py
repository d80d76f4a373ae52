"""Claim-check store and resolver against a real Azurite; BYTES tensors in the contract.

Each bad reference is bad input with its own stable code; an unreachable store is transient
(`ClaimStoreUnavailable`), never bad input.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from qscore.claimcheck import (
    CLAIM_CHECK_CONTENT_TYPE,
    ClaimCheckSettings,
    ClaimReference,
    ClaimResolver,
    ClaimStore,
    ClaimStoreUnavailable,
)
from qscore.contracts import (
    REQUEST_CONTENT_TYPE,
    ContractViolation,
    ErrorCode,
    ModelSpec,
    ScoreRequest,
    Tensor,
)
from qscore.contracts.validation import request_arrays
from qscore_local.azurite import AzuriteEndpoint, connection_string
from tests.fixtures.ports import free_port

IMAGE_SPEC = ModelSpec.from_triton_config(
    {
        "name": "digit_images",
        "max_batch_size": 64,
        "input": [{"name": "image", "data_type": "TYPE_STRING", "dims": ["1"]}],
        "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": ["10"]}],
        "parameters": {"qscore.max_request_bytes": {"string_value": "1000"}},
    },
    ["1"],
)


def test_bytes_tensor_travels_as_base64_per_element_and_is_checked_against_the_config() -> None:
    images = np.array([[b"\x89PNG first"], [b"second \x00 image"]], dtype=object)
    tensor = Tensor.from_numpy(images)
    assert tensor.datatype == "BYTES" and tensor.data == [base64.b64encode(i[0]).decode() for i in images]
    request = ScoreRequest(model="digit_images", inputs={"image": tensor})
    decoded = request_arrays(ScoreRequest.model_validate_json(request.model_dump_json()), IMAGE_SPEC)
    assert decoded["image"].tolist() == images.tolist()
    assert IMAGE_SPEC.inputs[0].datatype == "BYTES" and IMAGE_SPEC.max_request_bytes == 1000
    with pytest.raises(ContractViolation) as bad:
        request_arrays(
            ScoreRequest(
                model="digit_images", inputs={"image": Tensor(datatype="BYTES", shape=[1, 1], data=["%%"])}
            ),
            IMAGE_SPEC,
        )
    assert bad.value.code == ErrorCode.BAD_TENSOR_ENCODING
    with pytest.raises(ContractViolation) as wrong:
        request_arrays(
            ScoreRequest(
                model="digit_images", inputs={"image": Tensor(datatype="FP32", shape=[1, 1], data=[1.0])}
            ),
            IMAGE_SPEC,
        )
    assert wrong.value.code == ErrorCode.BAD_DTYPE


@pytest.fixture
async def store(azurite: AzuriteEndpoint) -> AsyncIterator[ClaimStore]:
    settings = ClaimCheckSettings(
        connection=azurite.connection_string, container=f"claims-{uuid.uuid4().hex[:8]}"
    )
    claim_store = ClaimStore(settings)
    yield claim_store
    await claim_store.close()


async def _limit(model: str) -> int | None:
    return IMAGE_SPEC.max_request_bytes if model == "digit_images" else None


async def test_a_reference_resolves_to_its_body_and_release_deletes_the_blob(store: ClaimStore) -> None:
    body = b'{"model": "digits", "inputs": {}}' * 100
    claim = await store.put("requests/r1", body, REQUEST_CONTENT_TYPE)
    resolver = ClaimResolver(store, model_limit=_limit)
    resolved = await resolver.resolve(
        CLAIM_CHECK_CONTENT_TYPE, ClaimReference(claim_check=claim).body(), key="r1"
    )
    assert resolved.body == body and resolved.content_type == REQUEST_CONTENT_TYPE
    assert (await resolver.resolve(REQUEST_CONTENT_TYPE, b"inline", key="r2")).body == b"inline"
    await resolver.release(["r1", "r2"])
    assert await store.names() == []


async def _code_of(resolver: ClaimResolver, reference: bytes) -> ErrorCode:
    with pytest.raises(ContractViolation) as caught:
        await resolver.resolve(CLAIM_CHECK_CONTENT_TYPE, reference, key="x")
    return caught.value.code


async def test_every_bad_reference_is_bad_input_with_its_own_code(store: ClaimStore) -> None:
    resolver = ClaimResolver(store, model_limit=_limit)
    good = await store.put("requests/good", b"x" * 500, REQUEST_CONTENT_TYPE)
    big = await store.put("requests/big", b"y" * 2000, REQUEST_CONTENT_TYPE)
    cases = {
        b'{"claim_check": {"container": "c"}}': ErrorCode.CLAIM_CHECK_INVALID,
        ClaimReference(claim_check=good.model_copy(update={"container": "elsewhere"})).body(): (
            ErrorCode.CLAIM_CHECK_WRONG_CONTAINER
        ),
        ClaimReference(claim_check=good.model_copy(update={"blob": "requests/none"})).body(): (
            ErrorCode.CLAIM_CHECK_MISSING
        ),
        ClaimReference(
            claim_check=good.model_copy(update={"size": 499})
        ).body(): ErrorCode.CLAIM_CHECK_MISMATCH,
        ClaimReference(
            claim_check=good.model_copy(update={"sha256": "0" * 64})
        ).body(): ErrorCode.CLAIM_CHECK_MISMATCH,
        # over the model's qscore.max_request_bytes, by the reference's size and by the blob's
        ClaimReference(claim_check=big, model="digit_images").body(): ErrorCode.CLAIM_CHECK_TOO_LARGE,
        ClaimReference(claim_check=big.model_copy(update={"size": 10}), model="digit_images").body(): (
            ErrorCode.CLAIM_CHECK_TOO_LARGE
        ),
    }
    for reference, code in cases.items():
        assert await _code_of(resolver, reference) == code, reference


async def test_an_unreachable_store_is_transient_not_bad_input() -> None:
    settings = ClaimCheckSettings(
        connection=connection_string("127.0.0.1", free_port()), retry_total=0, timeout_s=2
    )
    store = ClaimStore(settings)
    try:
        with pytest.raises(ClaimStoreUnavailable):
            await store.put("requests/r", b"body", REQUEST_CONTENT_TYPE)
        reference = ClaimReference(
            claim_check={
                "container": settings.container,
                "blob": "requests/r",
                "size": 4,
                "sha256": "a" * 64,
                "content_type": "x",
            }  # type: ignore[arg-type]
        ).body()
        with pytest.raises(ClaimStoreUnavailable):
            await ClaimResolver(store).resolve(CLAIM_CHECK_CONTENT_TYPE, reference)
    finally:
        await store.close()
