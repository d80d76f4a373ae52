"""One queue-path load-generator process: a ScoringProducer sending one-row requests and
timing each until its reply comes back (producer -> bus -> worker -> Triton -> reply).

Concurrent requests are coalesced into one send while the previous send is in flight (what
a busy real producer does), so the producer's own send round trip is not the limit.
`--client` picks how requests travel: `transfer` (above: one message per request, many per
send), `coalesce` / `single` (the library's own `score()` with producer-side coalescing on /
off: issue 16's comparison), `batch` (`--items N` single-row requests per request-batch
message, one `score_batch()` per operation). `--priority 9` sends to the high lane.
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

from qscore.heap import freeze_start_up_heap
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
    parser.add_argument("--client", choices=CLIENTS, default="transfer")
    parser.add_argument("--items", type=int, default=1, help="items per message (--client batch)")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--high-queue", default="scoring-requests-high")
    return parser.parse_args(argv)


CLIENTS = ("transfer", "coalesce", "single", "batch")


def stage_details(outcome: ReplyOutcome) -> dict[str, float]:
    """The reply's stage timings, or RequestFailed for a timeout or an error reply."""
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


class LibraryScorer:
    """The library's own calls: `score()` one row (coalesced or not, by the producer's
    settings), or `score_batch()` of `items` single-row requests in one message."""

    def __init__(self, producer: ScoringProducer, args: argparse.Namespace) -> None:
        self.producer = producer
        self.model = args.model
        self.timeout_s = args.reply_timeout_s
        self.items = args.items if args.client == "batch" else 1
        self.priority = args.priority

    async def score(self, rows: np.ndarray) -> dict[str, float]:
        if self.items == 1:
            outcome = await self.producer.score(
                self.model,
                {INPUT_NAME: rows},
                timeout_s=self.timeout_s,
                priority=self.priority,
                raise_on_error=False,  # stage_details reports an error or a timeout itself
            )
            return stage_details(outcome)
        requests = [OutgoingRequest.build(self.model, {INPUT_NAME: rows}) for _ in range(self.items)]
        outcomes = await self.producer.score_batch(requests, timeout_s=self.timeout_s, priority=self.priority)
        details = [stage_details(outcome) for outcome in outcomes]  # every item must be ok
        return details[0]

    async def close(self) -> None:
        return None


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
        return stage_details(await future)

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


async def measure(scorer: CoalescingScorer | LibraryScorer, args: argparse.Namespace) -> LoadSample:
    pixels = load_pixels()
    size = args.rows
    starts = range(0, pixels.shape[0] - size + 1, size) if size <= pixels.shape[0] else [0]
    rows = itertools.cycle([np.resize(pixels[start:], (size, pixels.shape[1])) for start in starts])

    async def one_request() -> dict[str, float]:
        return await scorer.score(next(rows))

    if args.rate > 0:
        return await open_loop(
            one_request, rate_per_s=args.rate, start_at=args.start_at, duration_s=args.duration_s
        )
    return await closed_loop(
        one_request, concurrency=args.concurrency, start_at=args.start_at, duration_s=args.duration_s
    )


def write_sample(sample: LoadSample, out: Path, *, batch_size: int = 1) -> None:
    sample.latencies_ms = subsample(sample.latencies_ms, MAX_LATENCIES)
    step = max(1, len(sample.details) // MAX_DETAILS)
    sample.details = sample.details[::step]
    ChildResult(out).write(sample.as_dict() | {"batch_size": batch_size})


async def run(args: argparse.Namespace) -> None:
    """Measure, write the result, then tear down (bounded: the result is already safe)."""
    settings = ProducerSettings(
        connection=args.connection,
        request_queue=args.request_queue,
        high_priority_queue=args.high_queue,
        reply_queue=args.reply_queue,
        reply_timeout_s=args.reply_timeout_s,
        coalesce=args.client == "coalesce",
    )
    producer = ScoringProducer(settings=settings)
    await producer.start()
    # As a serving process would (qscore.heap), and the direct client does: start-up's objects
    # out of the collections that otherwise stopped this loop for 35-80 ms every few seconds.
    freeze_start_up_heap()  # for the process's life: the undo is not needed
    scorer: CoalescingScorer | LibraryScorer
    if args.client == "transfer" and args.priority == 0:
        scorer = CoalescingScorer(producer, args.model, args.reply_timeout_s)
    else:
        scorer = LibraryScorer(producer, args)
    try:
        sample = await measure(scorer, args)
        await asyncio.to_thread(
            write_sample, sample, args.out, batch_size=samples_per_operation(scorer, args)
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scorer.close(), TEARDOWN_TIMEOUT_S)
            await asyncio.wait_for(producer.close(), TEARDOWN_TIMEOUT_S)


def samples_per_operation(scorer: CoalescingScorer | LibraryScorer, args: argparse.Namespace) -> int:
    return args.rows * (scorer.items if isinstance(scorer, LibraryScorer) else 1)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
