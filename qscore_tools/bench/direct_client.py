"""One direct-Triton load-generator process: asyncio gRPC straight to Triton, no queue.

Run by qscore_tools.bench.direct (several at once when one client process is the bottleneck):
`python -m qscore_tools.bench.direct_client --url 127.0.0.1:8001 --model digits --batch-size 64
--concurrency 8 --start-at EPOCH --duration-s 5 --out result.json` (add `--rate R` for open loop).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from pathlib import Path

from qscore.heap import freeze_startup_objects
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
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> LoadSample:
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
        freeze_startup_objects()  # as the queue path's load client does (qscore.heap)

        async def infer_once() -> dict[str, float] | None:
            await client.infer(args.model, [next(cycle)])
            return None

        operation: Operation = infer_once
        if args.rate > 0:
            return await open_loop(
                operation, rate_per_s=args.rate, start_at=args.start_at, duration_s=args.duration_s
            )
        return await closed_loop(
            operation, concurrency=args.concurrency, start_at=args.start_at, duration_s=args.duration_s
        )
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sample = asyncio.run(run(args))
    sample.latencies_ms = subsample(sample.latencies_ms, MAX_LATENCIES)
    payload = sample.as_dict() | {"batch_size": args.batch_size}
    ChildResult(args.out).write(payload)


if __name__ == "__main__":
    main()
