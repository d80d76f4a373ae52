"""The async client against the real tritonserver (session fixture `triton`)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from qscore.inference.client import (
    InferenceRejected,
    InferenceUnavailable,
    ModelNotFound,
    TritonClient,
)
from qscore.inference.metrics import batching_counters, parse_metrics, scrape_metrics
from qscore.inference.testset import DigitsTestSet
from qscore_local.triton.launcher import TritonEndpoints, pick_free_port
from qscore_local.triton.smoke import run_smoke


@pytest.mark.parametrize(("version", "floor"), [("1", 0.93), ("2", 0.95)])
async def test_scores_held_out_set_per_version(
    triton_client: TritonClient, digits_test_set: DigitsTestSet, version: str, floor: float
) -> None:
    # 450 samples > max_batch_size 256: the client splits and rejoins the batch.
    result = await triton_client.infer("digits", {"pixels": digits_test_set.pixels}, version=version)
    assert result.model_version == version
    assert result.outputs["probabilities"].shape == (450, 10)
    assert result.outputs["label"].shape == (450, 1)
    assert result.outputs["label"].dtype == np.int64
    assert float(np.mean(result.outputs["label"][:, 0] == digits_test_set.labels)) >= floor


async def test_default_version_is_latest_and_outputs_can_be_chosen(
    triton_client: TritonClient, digits_test_set: DigitsTestSet
) -> None:
    result = await triton_client.infer("digits", {"pixels": digits_test_set.pixels[:4]}, outputs=["label"])
    assert result.model_version == "2"
    assert list(result.outputs) == ["label"]


async def test_bench_model_serves(triton_client: TritonClient, digits_test_set: DigitsTestSet) -> None:
    result = await triton_client.infer("bench_mlp", {"pixels": digits_test_set.pixels[:64]})
    assert result.outputs["probabilities"].shape == (64, 10)


async def test_unknown_model_and_version_are_model_not_found(triton_client: TritonClient) -> None:
    pixels = np.zeros((1, 64), np.float32)
    with pytest.raises(ModelNotFound, match="nope"):
        await triton_client.infer("nope", {"pixels": pixels})
    with pytest.raises(ModelNotFound, match="version 9"):
        await triton_client.infer("digits", {"pixels": pixels}, version="9")
    with pytest.raises(ModelNotFound):
        await triton_client.model_spec("nope")


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ({"pixels": np.zeros((2, 5), np.float32)}, "unexpected shape"),
        ({"pixels": np.zeros((2, 64), np.float64)}, "FP64"),
        ({"features": np.zeros((2, 64), np.float32)}, "unexpected inference input"),
        ({"pixels": np.array([["x"] * 64], dtype=object)}, "BYTES"),  # Triton: digits wants FP32
        ({"pixels": np.zeros((2, 64), np.float32), "extra": np.zeros((3, 1), np.float32)}, "batch size"),
    ],
)
async def test_bad_inputs_are_rejected(
    triton_client: TritonClient, inputs: dict[str, np.ndarray], match: str
) -> None:
    with pytest.raises(InferenceRejected, match=match):
        await triton_client.infer("digits", inputs)


async def test_statistics_count_inferences(triton_client: TritonClient) -> None:
    await triton_client.infer("digits", {"pixels": np.zeros((3, 64), np.float32)}, version="1")
    stats = await triton_client.statistics("digits")
    v1 = next(s for s in stats["model_stats"] if s["version"] == "1")
    assert int(v1["inference_count"]) >= 3


async def test_concurrent_requests_are_batched_by_triton(
    triton: TritonEndpoints, triton_client: TritonClient, digits_test_set: DigitsTestSet
) -> None:
    before = batching_counters(await scrape_metrics(triton.metrics_url), "digits", "2")
    requests = [
        triton_client.infer("digits", {"pixels": digits_test_set.pixels[i : i + 1]}, version="2")
        for i in range(200)
    ]
    results = await asyncio.gather(*requests)
    after = batching_counters(await scrape_metrics(triton.metrics_url), "digits", "2")
    requests_served = after.request_success - before.request_success
    executions = after.exec_count - before.exec_count
    assert requests_served == 200
    assert 1 <= executions <= 200 / 4, f"{executions} executions for 200 requests: no batching"
    labels = np.concatenate([r.outputs["label"][:, 0] for r in results])
    assert float(np.mean(labels == digits_test_set.labels[:200])) >= 0.95


async def test_smoke_reports_accuracy_and_batching(
    triton: TritonEndpoints, digits_test_set: DigitsTestSet
) -> None:
    (score,) = await run_smoke(triton, digits_test_set, versions=["2"], concurrency=200)
    assert score.accuracy >= 0.95
    assert score.batching.request_success == len(digits_test_set)
    assert score.batching.requests_per_execution > 2


async def test_absent_server_is_unavailable_with_a_clear_error() -> None:
    client = TritonClient(f"127.0.0.1:{pick_free_port()}", timeout_s=2)
    try:
        assert not await client.is_ready()
        with pytest.raises(InferenceUnavailable, match="not ready after"):
            await client.wait_ready(timeout=0.3)
        with pytest.raises(InferenceUnavailable, match="UNAVAILABLE"):
            await client.infer("digits", {"pixels": np.zeros((1, 64), np.float32)})
    finally:
        await client.close()


def test_metrics_parser_handles_labels_and_comments() -> None:
    text = (
        "# HELP nv_inference_exec_count x\n# TYPE nv_inference_exec_count counter\n"
        'nv_inference_exec_count{model="digits",version="2"} 3\n'
        'nv_inference_request_success{model="digits",version="2"} 12\n'
        'nv_inference_count{model="digits",version="2"} 40\n'
        'nv_inference_exec_count{model="digits",version="1"} 5\n'
        "garbage line\n"
    )
    samples = parse_metrics(text)
    v2 = batching_counters(samples, "digits", "2")
    assert (v2.request_success, v2.inference_count, v2.exec_count) == (12, 40, 3)
    assert v2.requests_per_execution == 4
    assert batching_counters(samples, "digits").exec_count == 8
