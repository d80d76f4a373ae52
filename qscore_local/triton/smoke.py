"""The Triton smoke: score the held-out digits through the async client, one request per sample.

Sending every sample as its own concurrent request lets Triton's dynamic batcher form
batches, so the report shows both accuracy and how well requests were batched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from qscore.inference.client import TritonClient
from qscore.inference.metrics import BatchingCounters, batching_counters, scrape_metrics
from qscore.inference.testset import DigitsTestSet
from qscore_local.triton.launcher import TritonEndpoints

MODEL = "digits"


@dataclass(frozen=True)
class VersionScore:
    version: str
    samples: int
    accuracy: float
    batching: BatchingCounters  # counter increase during this version's run


async def score_version(
    client: TritonClient, metrics_url: str, test_set: DigitsTestSet, version: str, concurrency: int
) -> VersionScore:
    """One request per sample, at most `concurrency` in flight; accuracy and batching counters."""
    before = batching_counters(await scrape_metrics(metrics_url), MODEL, version)
    gate = asyncio.Semaphore(concurrency)

    async def score_one(index: int) -> int:
        async with gate:
            result = await client.infer(
                MODEL, {"pixels": test_set.pixels[index : index + 1]}, version=version
            )
            return int(result.outputs["label"].reshape(-1)[0])

    labels = await asyncio.gather(*(score_one(i) for i in range(len(test_set))))
    # Triton counts a request once its response has gone out, which can be just after the client
    # has it: read the counters until they show every request (or three seconds have passed).
    loop = asyncio.get_running_loop()
    settle_until = loop.time() + 3.0
    while True:
        after = batching_counters(await scrape_metrics(metrics_url), MODEL, version)
        counted = after.request_success - before.request_success
        if counted >= len(test_set) or loop.time() > settle_until:
            break
        await asyncio.sleep(0.05)
    delta = BatchingCounters(
        request_success=after.request_success - before.request_success,
        inference_count=after.inference_count - before.inference_count,
        exec_count=after.exec_count - before.exec_count,
    )
    accuracy = float(np.mean(np.asarray(labels) == test_set.labels))
    return VersionScore(version=version, samples=len(test_set), accuracy=accuracy, batching=delta)


async def run_smoke(
    endpoints: TritonEndpoints, test_set: DigitsTestSet, *, versions: list[str], concurrency: int = 200
) -> list[VersionScore]:
    """Score the test set on each version of `digits` on an already running server."""
    client = TritonClient(endpoints.grpc_url)
    try:
        await client.wait_ready(timeout=30)
        return [
            await score_version(client, endpoints.metrics_url, test_set, v, concurrency) for v in versions
        ]
    finally:
        await client.close()
