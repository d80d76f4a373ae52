"""One direct-Triton load-generator process: asyncio gRPC straight to Triton, no queue.

Run by qscore_tools.bench.direct (several at once when one client process is the bottleneck):
`python -m qscore_tools.bench.direct_client --url 127.0.0.1:8001 --model digits --batch-size 64
--concurrency 8 --start-at EPOCH --duration-s 5 --out result.json` (add `--rate R` for open loop).
With `--stream`, the requests go through the batch direct engine's request channel with its
streams on (`qscore.batch.direct_requests`, `stream=True`: messages of `ModelStreamInfer`
streams) instead of tritonclient's unary `infer`: how the streamed ceiling in docs/batch.md was
measured (not part of `qscore batch bench`: streams crashed Triton 2.51 once).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from pathlib import Path

from qscore.heap import freeze_start_up_heap
from qscore_tools.bench.latency import subsample
from qscore_tools.bench.load import LoadSample, Operation, closed_loop, open_loop
from qscore_tools.bench.workload import INPUT_NAME, ChildResult, batches, load_pixels

# Latencies a child sends back at most: percentiles stay exact enough, files stay small.
MAX_LATENCIES = 50_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 = closed loop")
    parser.add_argument("--start-at", type=float, required=True, help="window start, epoch seconds")
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stream", action="store_true", help="the direct engine's streamed requests")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> LoadSample:
    if args.stream:
        return await run_streamed(args)
    import tritonclient.grpc.aio as triton_grpc
    from tritonclient.grpc import InferInput

    client = triton_grpc.InferenceServerClient(args.url)
    try:
        prepared = []
        for batch in batches(load_pixels(), args.batch_size):
            tensor = InferInput(INPUT_NAME, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            prepared.append(tensor)
        cycle = itertools.cycle(prepared)
        freeze_start_up_heap()  # as the queue path's load client does (qscore.heap)

        async def infer_once() -> dict[str, float] | None:
            await client.infer(args.model, [next(cycle)])
            return None

        return await _load(args, infer_once)
    finally:
        await client.close()


async def run_streamed(args: argparse.Namespace) -> LoadSample:
    from qscore.batch.direct_requests import RawRequests

    requests = RawRequests(args.url, timeout_s=60.0, stream=True)
    cycle = itertools.cycle(batches(load_pixels(), args.batch_size))

    async def infer_once() -> dict[str, float] | None:
        inputs = {INPUT_NAME: next(cycle)}
        await requests.infer(args.model, inputs, version="", outputs=None, max_batch_size=0)
        return None

    try:
        return await _load(args, infer_once)
    finally:
        await requests.close()


async def _load(args: argparse.Namespace, operation: Operation) -> LoadSample:
    if args.rate > 0:
        return await open_loop(
            operation, rate_per_s=args.rate, start_at=args.start_at, duration_s=args.duration_s
        )
    return await closed_loop(
        operation, concurrency=args.concurrency, start_at=args.start_at, duration_s=args.duration_s
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sample = asyncio.run(run(args))
    sample.latencies_ms = subsample(sample.latencies_ms, MAX_LATENCIES)
    payload = sample.as_dict() | {"batch_size": args.batch_size}
    ChildResult(args.out).write(payload)


if __name__ == "__main__":
    main()
