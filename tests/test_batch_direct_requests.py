"""The direct engine's own `ModelInfer` messages (qscore.batch.direct_requests) against the real
Triton: the same outputs, versions and error types as `TritonClient.infer` for the same rows,
requests in flight on one stream matched to their responses, a broken stream replaced."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from qscore.batch.direct_requests import RawRequests, has_raw_form
from qscore.inference.client import InferResult, TritonClient
from qscore.inference.errors import InferenceRejected, ModelNotFound
from qscore.inference.testset import DigitsTestSet
from qscore_local.triton.launcher import TritonEndpoints

OUTPUTS = ["probabilities", "label"]


async def test_same_outputs_as_the_client_across_a_split_and_for_each_version(
    triton: TritonEndpoints, triton_client: TritonClient, digits_test_set: DigitsTestSet
) -> None:
    pixels = np.ascontiguousarray(digits_test_set.pixels[:300])  # above max_batch_size (256): 2 requests
    spec = await triton_client.model_spec("digits")
    requests = RawRequests(triton.grpc_url, timeout_s=30.0)
    try:
        for version in spec.versions:
            raw = await requests.infer(
                "digits",
                {"pixels": pixels},
                version=version,
                outputs=OUTPUTS,
                max_batch_size=spec.max_batch_size,
            )
            expected = await triton_client.infer(
                "digits", {"pixels": pixels}, version=version, outputs=OUTPUTS
            )
            assert raw.model_version == expected.model_version == version
            assert set(raw.outputs) == set(OUTPUTS)
            for name in OUTPUTS:
                assert raw.outputs[name].dtype == expected.outputs[name].dtype
                np.testing.assert_array_equal(raw.outputs[name], expected.outputs[name])
    finally:
        await requests.close()


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_errors_are_the_clients_error_types(triton: TritonEndpoints, stream: bool) -> None:
    requests = RawRequests(triton.grpc_url, timeout_s=30.0, stream=stream)
    pixels = np.zeros((2, 64), dtype=np.float32)
    try:
        with pytest.raises(ModelNotFound):
            await requests.infer(
                "no_such_model", {"pixels": pixels}, version="", outputs=None, max_batch_size=0
            )
        with pytest.raises(InferenceRejected):  # wrong width: Triton refuses the request
            await requests.infer(
                "digits",
                {"pixels": np.zeros((2, 3), dtype=np.float32)},
                version="",
                outputs=None,
                max_batch_size=256,
            )
    finally:
        await requests.close()


def test_only_numeric_inputs_take_the_raw_form() -> None:
    assert has_raw_form({"pixels": np.zeros((2, 64), dtype=np.float32), "n": np.zeros(2, dtype=np.int64)})
    assert not has_raw_form({"text": np.array([b"a", b"b"], dtype=object)})


async def test_concurrent_requests_on_the_stream_get_their_own_responses(
    triton: TritonEndpoints, triton_client: TritonClient, digits_test_set: DigitsTestSet
) -> None:
    # 2,000 rows, each 256-row request different: 8 requests in flight on one stream, answered
    # in any order, each matched to its request by id.
    pixels = np.ascontiguousarray(np.tile(digits_test_set.pixels, (5, 1))[:2000])
    requests = RawRequests(triton.grpc_url, timeout_s=30.0, stream=True, streams=1)
    try:
        raw = await requests.infer(
            "digits", {"pixels": pixels}, version="2", outputs=OUTPUTS, max_batch_size=256
        )
        expected = await triton_client.infer("digits", {"pixels": pixels}, version="2", outputs=OUTPUTS)
        for name in OUTPUTS:
            np.testing.assert_array_equal(raw.outputs[name], expected.outputs[name])
    finally:
        await requests.close()


async def test_a_broken_stream_fails_its_requests_and_the_next_request_opens_another(
    triton: TritonEndpoints, digits_test_set: DigitsTestSet
) -> None:
    pixels = np.ascontiguousarray(digits_test_set.pixels[:10])
    requests = RawRequests(triton.grpc_url, timeout_s=30.0, stream=True, streams=1)

    async def infer() -> InferResult:
        return await requests.infer(
            "digits", {"pixels": pixels}, version="2", outputs=None, max_batch_size=256
        )

    try:
        await infer()
        stream = requests._streams[0]
        assert stream is not None
        stream.call.cancel()  # as a connection lost mid-run ends the call
        for _ in range(100):
            if stream.broken:
                break
            await asyncio.sleep(0.01)
        assert stream.broken
        assert (await infer()).model_version == "2"
        assert requests._streams[0] is not stream
    finally:
        await requests.close()


async def test_streamed_requests_give_the_unary_calls_outputs(
    triton: TritonEndpoints, digits_test_set: DigitsTestSet
) -> None:
    pixels = np.ascontiguousarray(digits_test_set.pixels[:300])
    streamed, unary = (
        RawRequests(triton.grpc_url, timeout_s=30.0, stream=True),
        RawRequests(triton.grpc_url, timeout_s=30.0, stream=False),
    )
    try:
        results = [
            await r.infer("digits", {"pixels": pixels}, version="2", outputs=OUTPUTS, max_batch_size=256)
            for r in (streamed, unary)
        ]
        for name in OUTPUTS:
            np.testing.assert_array_equal(results[0].outputs[name], results[1].outputs[name])
    finally:
        await streamed.close()
        await unary.close()
