"""Image requests inline vs by reference (claim-check) through the local stack, in one run.

`python -m qscore_tools.bench.claimcheck [--requests 6] [--json out.json]` starts the local bus
(1 MiB message limit, like Service Bus Premium's default here), Triton serving `digit_images`,
Azurite and one in-process worker, then for each body size (100 KB, 1 MB, 8 MB) sends the same
noisy PNG request N times inline and N times by reference and reports requests/s, MB/s and
p50/p99 end-to-end latency. A size whose inline body is over the queue's limit is reported as
refused (the producer says so before sending). Separately it times the claim-check itself per
request: upload + download + checks + delete, wall ms and CPU ms of this process.
The machine is shared and loaded: compare the ratios within one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qscore.claimcheck import ClaimCheckSettings, ClaimStore
from qscore.contracts import REQUEST_CONTENT_TYPE
from qscore.inference.images import IMAGE_INPUT, IMAGE_MODEL, digit_png, image_batch, side_for_bytes
from qscore.inference.testset import load_digits_test_set
from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer

SIZES = {"100KB": 100_000, "1MB": 1_000_000, "8MB": 8_000_000}
BASE64_GROWTH = 4 / 3


@dataclass
class Point:
    size: str
    mode: str  # inline | reference
    body_bytes: int
    requests: int
    ok: int
    requests_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    refused: str | None = None


@dataclass
class ClaimCost:
    size: str
    body_bytes: int
    wall_ms_per_request: float
    cpu_ms_per_request: float


def image_request(body_bytes: int) -> OutgoingRequest:
    """A digit_images request whose JSON body is about `body_bytes` (the PNG is base64 inside)."""
    pixels = load_digits_test_set().pixels[0]
    png = digit_png(pixels, side=side_for_bytes(int(body_bytes / BASE64_GROWTH)), seed=1)
    return OutgoingRequest.build(IMAGE_MODEL, {IMAGE_INPUT: image_batch([png])})


async def run_point(
    producer: ScoringProducer, size: str, mode: str, template: OutgoingRequest, count: int
) -> Point:
    body = len(template.body())
    images = template.request.inputs[IMAGE_INPUT].to_numpy()
    requests = [OutgoingRequest.build(IMAGE_MODEL, {IMAGE_INPUT: images}) for _ in range(count)]
    started = time.perf_counter()
    try:
        outcomes = await producer.score_many(requests, timeout_s=120)
    except ValueError as exc:  # over the queue's message size: refused before sending
        return Point(size, mode, body, count, 0, 0.0, 0.0, 0.0, 0.0, refused=str(exc))
    elapsed = time.perf_counter() - started
    latencies = [o.latency_ms for o in outcomes if o.ok]
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (0.0, 0.0)
    return Point(
        size,
        mode,
        body,
        count,
        len(latencies),
        count / elapsed,
        count * body / elapsed / 1e6,
        float(p50),
        float(p99),
    )


async def claim_cost(settings: ClaimCheckSettings, size: str, data: bytes, count: int) -> ClaimCost:
    store = ClaimStore(settings)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(count):
            claim = await store.put(f"bench/{index}", data, REQUEST_CONTENT_TYPE)
            await store.fetch(claim, max_bytes=len(data))
            await store.delete(claim.blob)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await store.close()
    return ClaimCost(size, len(data), wall * 1000 / count, cpu * 1000 / count)


async def run(count: int, sizes: dict[str, int]) -> dict[str, object]:
    from qscore_local.azurite import LocalAzurite
    from qscore_local.bus.launcher import LocalBus
    from qscore_local.triton.launcher import LocalTriton

    scratch = Path(tempfile.mkdtemp(prefix="qscore-bench-claims-"))
    azurite = LocalAzurite()
    blob = await asyncio.to_thread(azurite.start)
    try:
        async with LocalBus(data_dir=scratch / "bus") as bus, LocalTriton(models=[IMAGE_MODEL]) as triton:
            return await _measure(bus, triton, blob, scratch, count, sizes)
    finally:
        await asyncio.to_thread(azurite.stop)


async def _measure(
    bus: Any, triton: Any, blob: Any, scratch: Path, count: int, sizes: dict[str, int]
) -> dict[str, object]:
    """One in-process worker; every point inline then by reference; the claim-check's own cost."""
    from workers.app import run_worker
    from workers.settings import WorkerSettings
    from workers.signals import StopRequest
    from workers.telemetry import WorkerTelemetry

    os.environ["QSCORE_BLOB_CONNECTION"] = blob.connection_string  # the worker's claim-check store
    settings = WorkerSettings(
        servicebus_connection=bus.connection_string,
        triton_url=triton.grpc_url,
        health_port=None,
        registry_path=scratch / "registry.json",
        worker_id="bench-worker",
    )
    stop = StopRequest()
    telemetry = WorkerTelemetry(enabled=False)
    worker = asyncio.create_task(run_worker(settings, stop=stop, telemetry=telemetry, handle_signals=False))
    load_before = os.getloadavg()
    try:
        points, costs = await _points(bus.connection_string, blob.connection_string, count, sizes)
    finally:
        stop.request("bench done")
        await worker
        del os.environ["QSCORE_BLOB_CONNECTION"]
    return {
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "requests_per_point": count,
        "points": [asdict(p) for p in points],
        "claim_check_cost": [asdict(c) for c in costs],
    }


async def _points(
    bus_connection: str, blob_connection: str, count: int, sizes: dict[str, int]
) -> tuple[list[Point], list[ClaimCost]]:
    points: list[Point] = []
    costs: list[ClaimCost] = []
    inline = ScoringProducer(settings=ProducerSettings(connection=bus_connection), claim_check=None)
    by_reference = ScoringProducer(
        settings=ProducerSettings(connection=bus_connection),
        claim_check=ClaimCheckSettings(connection=blob_connection, threshold_bytes=1),
    )
    store_settings = ClaimCheckSettings(connection=blob_connection, container="qscore-bench")
    async with inline, by_reference:
        await inline.score_many([image_request(10_000)], timeout_s=120)  # warm up Triton and the worker
        for size, body_bytes in sizes.items():
            template = await asyncio.to_thread(image_request, body_bytes)
            points.append(await run_point(inline, size, "inline", template, count))
            points.append(await run_point(by_reference, size, "reference", template, count))
            costs.append(await claim_cost(store_settings, size, template.body(), count))
    return points, costs


def render(result: dict[str, object]) -> str:
    lines = [
        f"load average {result['load_average_before']} before, {result['load_average']} after, on "
        f"{result['cpus']} CPUs; {result['requests_per_point']} requests per point"
    ]
    lines.append(
        f"{'size':>6} {'mode':>9} {'body MB':>8} {'req/s':>7} {'MB/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for p in result["points"]:  # type: ignore[attr-defined]
        if p["refused"]:
            lines.append(
                f"{p['size']:>6} {p['mode']:>9} {p['body_bytes'] / 1e6:8.2f}  "
                "refused: over the queue's message limit"
            )
            continue
        lines.append(
            f"{p['size']:>6} {p['mode']:>9} {p['body_bytes'] / 1e6:8.2f} {p['requests_per_s']:7.2f} "
            f"{p['mb_per_s']:7.2f} {p['p50_ms']:8.0f} {p['p99_ms']:8.0f}"
        )
    lines.append("claim-check cost per request (upload + download + SHA-256 + delete, this process):")
    for c in result["claim_check_cost"]:  # type: ignore[attr-defined]
        lines.append(
            f"{c['size']:>6}: {c['wall_ms_per_request']:7.1f} ms wall, {c['cpu_ms_per_request']:7.1f} ms CPU"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6, help="requests per point")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: " + ",".join(SIZES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = {name: SIZES[name] for name in args.sizes.split(",")}
    result = asyncio.run(run(args.requests, sizes))
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
