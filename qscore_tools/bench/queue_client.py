"""One queue-path load-generator process: a ScoringProducer sending one-row requests and
timing each until its reply comes back (producer -> bus -> worker -> Triton -> reply).

Concurrent requests are coalesced into one send while the previous send is in flight (what
a busy real producer does), so the producer's own send round trip is not the limit.
Run by qscore_tools.bench.queue_path: `python -m qscore_tools.bench.queue_client --connection CS --model
digits --concurrency 32 --start-at EPOCH --duration-s 5 --out result.json` (`--rate R` for open loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from pathlib import Path

import numpy as np

from qscore.producer import OutgoingRequest, ProducerSettings, ReplyOutcome, ScoringProducer
from qscore_tools.bench.direct_client import MAX_LATENCIES
from qscore_tools.bench.latency import subsample
from qscore_tools.bench.load import LoadSample, closed_loop, open_loop
from qscore_tools.bench.workload import INPUT_NAME, ChildResult, load_pixels

# Per-request stage details sent back at most (means stay exact enough).
MAX_DETAILS = 5000
TEARDOWN_TIMEOUT_S = 10.0


class RequestFailed(Exception):
    """A request timed out or got an error reply (counted as an error of the load point)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connection", required=True)
    parser.add_argument("--request-queue", default="scoring-requests")
    parser.add_argument("--reply-queue", default="scoring-replies")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 = closed loop")
    parser.add_argument("--start-at", type=float, required=True, help="window start, epoch seconds")
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--reply-timeout-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


class CoalescingScorer:
    """score() one request; requests made while a send is in flight go out together in the next."""

    def __init__(self, producer: ScoringProducer, model: str, timeout_s: float) -> None:
        self.producer = producer
        self.model = model
        self.timeout_s = timeout_s
        self._queued: list[tuple[OutgoingRequest, asyncio.Future[ReplyOutcome]]] = []
        self._waiting: dict[str, asyncio.Future[ReplyOutcome]] = {}
        self._has_work = asyncio.Event()
        self._sent = asyncio.Event()
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._dispatch_loop())]

    async def score(self, rows: np.ndarray) -> dict[str, float]:
        outgoing = OutgoingRequest.build(self.model, {INPUT_NAME: rows})
        future: asyncio.Future[ReplyOutcome] = asyncio.get_running_loop().create_future()
        self._queued.append((outgoing, future))
        self._has_work.set()
        outcome = await future
        if not outcome.ok or outcome.reply is None:
            error = outcome.reply.error if outcome.reply is not None else None
            raise RequestFailed(f"{outcome.kind}: {error.code if error else 'no reply'}")
        timings = outcome.reply.timings
        stages = timings.queue_wait_ms + timings.batch_wait_ms + timings.inference_ms
        return {
            "queue_wait_ms": timings.queue_wait_ms,
            "batch_wait_ms": timings.batch_wait_ms,
            "inference_ms": timings.inference_ms,
            "reply_ms": max(0.0, outcome.latency_ms - stages),
        }

    async def _flush_loop(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            chunk, self._queued = self._queued, []
            for outgoing, future in chunk:
                self._waiting[outgoing.request_id] = future
            try:
                await self.producer.send([outgoing for outgoing, _ in chunk], timeout_s=self.timeout_s)
            except Exception as exc:
                for outgoing, future in chunk:
                    self._waiting.pop(outgoing.request_id, None)
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._sent.set()

    async def _dispatch_loop(self) -> None:
        while True:
            await self._sent.wait()
            self._sent.clear()
            async for outcome in self.producer.replies():
                future = self._waiting.pop(outcome.request_id, None)
                if future is not None and not future.done():
                    future.set_result(outcome)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def measure(scorer: CoalescingScorer, args: argparse.Namespace) -> LoadSample:
    pixels = load_pixels()
    rows = itertools.cycle([pixels[index : index + 1] for index in range(pixels.shape[0])])

    async def one_request() -> dict[str, float]:
        return await scorer.score(next(rows))

    if args.rate > 0:
        return await open_loop(
            one_request, rate_per_s=args.rate, start_at=args.start_at, duration_s=args.duration_s
        )
    return await closed_loop(
        one_request, concurrency=args.concurrency, start_at=args.start_at, duration_s=args.duration_s
    )


def write_sample(sample: LoadSample, out: Path) -> None:
    sample.latencies_ms = subsample(sample.latencies_ms, MAX_LATENCIES)
    step = max(1, len(sample.details) // MAX_DETAILS)
    sample.details = sample.details[::step]
    ChildResult(out).write(sample.as_dict() | {"batch_size": 1})


async def run(args: argparse.Namespace) -> None:
    """Measure, write the result, then tear down (bounded: the result is already safe)."""
    settings = ProducerSettings(
        connection=args.connection,
        request_queue=args.request_queue,
        reply_queue=args.reply_queue,
        reply_timeout_s=args.reply_timeout_s,
    )
    producer = ScoringProducer(settings=settings)
    await producer.start()
    scorer = CoalescingScorer(producer, args.model, args.reply_timeout_s)
    try:
        sample = await measure(scorer, args)
        await asyncio.to_thread(write_sample, sample, args.out)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scorer.close(), TEARDOWN_TIMEOUT_S)
            await asyncio.wait_for(producer.close(), TEARDOWN_TIMEOUT_S)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
