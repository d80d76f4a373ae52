"""Where the slowest single-row requests' time goes, stage by stage (issue 23's p99 point).

Starts a local bus, a digits Triton and one worker as the bench's stack does (max batch 64, 2 ms
delay) and sends single-row requests at a fixed open-loop rate from this process, with the bench
load client's own `transfer` scheme (`send()` of what queued while the last send was in flight,
outcomes from `replies()`). For each request it keeps wall-clock times from every process on
the machine: scheduled, handed to the scorer, send started and acknowledged, the reply's
timings (queue wait, batch wait, Triton), the reply message's enqueued time at the bus, the
reply session's receipt and the caller's wake-up. Prints p50 and p99, then each stage's mean
over the middle 1% of requests and over the slowest 1%:

    lag          scheduled -> the open loop got to it (this process's event loop behind)
    pre_send     -> its send started (waiting for the send in flight)
    send         the send's round trip (request enqueued at the bus before it returns)
    queue        enqueued -> received by the worker (the reply's queue_wait)
    batch        received -> its batch went to Triton (batch_wait)
    inference    the Triton call
    worker_reply Triton done -> reply enqueued at the bus (reply build, send; settlement runs after)
    bus_to_reply reply enqueued -> read by the reply session
    dispatch     read -> the caller resumed (decode, collector, this process's loop)

Times from different processes share the machine's clock; the bus stamps enqueued times in
whole milliseconds, and the request's own enqueued time is taken as its send's acknowledgement
(the reply does not carry it), so `worker_reply` reads low by the send's return leg (~1 ms).
`--freeze` freezes this process's start-up objects first (qscore.heap), as the
bench's load client does.

    python -m qscore_tools.bench.tail_stages --rate 600 --seconds 10 [--freeze]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import numpy as np

from qscore.heap import freeze_start_up_heap
from qscore.producer import OutgoingRequest, ProducerSettings, ReplyOutcome, ScoringProducer, reply_session
from qscore_tools.bench.queue_client import CoalescingScorer
from qscore_tools.bench.runner import local_bus
from qscore_tools.bench.stack import BenchStack, StackConfig
from qscore_tools.bench.workload import INPUT_NAME, load_pixels

STAGES = (
    "lag",
    "pre_send",
    "send",
    "queue",
    "batch",
    "inference",
    "worker_reply",
    "bus_to_reply",
    "dispatch",
)
WARMUP_SHARE = 0.1  # the first 10% of requests are left out (links, windows growing)


class _ReplyTimes:
    """The reply message's enqueued time (epoch s) by request id, read as the session takes it."""

    def __init__(self) -> None:
        self.enqueued: dict[str, float] = {}
        self._accept = reply_session.ReplySession._accept

    def __enter__(self) -> _ReplyTimes:
        original, enqueued = self._accept, self.enqueued

        def accept(session: Any, message: Any, received_at: float, body: bytes | None) -> None:
            if message.enqueued_time_utc is not None and message.correlation_id:
                enqueued[message.correlation_id] = message.enqueued_time_utc.timestamp()
            original(session, message, received_at, body)

        reply_session.ReplySession._accept = accept  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        reply_session.ReplySession._accept = self._accept  # type: ignore[method-assign]


class _TimedScorer(CoalescingScorer):
    """queue_client's scorer (the bench's `transfer` client), keeping each request's times."""

    def __init__(self, producer: ScoringProducer) -> None:
        self.times: dict[str, dict[str, float]] = {}
        super().__init__(producer, "digits", timeout_s=60)

    async def score_timed(self, rows: np.ndarray, scheduled: float) -> None:
        outgoing = OutgoingRequest.build(self.model, {INPUT_NAME: rows})
        times = self.times[outgoing.request_id] = {"scheduled": scheduled, "called": time.time()}
        future: asyncio.Future[ReplyOutcome] = asyncio.get_running_loop().create_future()
        self._queued.append((outgoing, future))
        self._has_work.set()
        outcome = await future
        times["resumed"] = time.time()
        if outcome.reply is None or outcome.reply.error is not None:
            raise RuntimeError(f"{outcome.request_id}: {outcome.kind}")
        timings = outcome.reply.timings
        times |= {
            "queue": timings.queue_wait_ms / 1000,
            "batch": timings.batch_wait_ms / 1000,
            "inference": timings.inference_ms / 1000,
            "read": outcome.finished_at,
        }

    async def _flush_loop(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            chunk, self._queued = self._queued, []
            started = time.time()
            for outgoing, future in chunk:
                self._waiting[outgoing.request_id] = future
            await self.producer.send([outgoing for outgoing, _ in chunk], timeout_s=self.timeout_s)
            acknowledged = time.time()
            for outgoing, _ in chunk:
                self.times[outgoing.request_id] |= {"send_started": started, "sent": acknowledged}
            self._sent.set()


def stages(times: dict[str, float], reply_enqueued: float) -> dict[str, float]:
    """One request's stages in seconds (see the module's docstring)."""
    triton_done = times["sent"] + times["queue"] + times["batch"] + times["inference"]
    return {
        "lag": times["called"] - times["scheduled"],
        "pre_send": times["send_started"] - times["called"],
        "send": times["sent"] - times["send_started"],
        "queue": times["queue"],
        "batch": times["batch"],
        "inference": times["inference"],
        "worker_reply": reply_enqueued - triton_done,
        "bus_to_reply": times["read"] - reply_enqueued,
        "dispatch": times["resumed"] - times["read"],
    }


def breakdown(rows: list[tuple[float, dict[str, float]]]) -> dict[str, Any]:
    """(latency s, stages) per request -> p50, p99 and the stage means of the middle and slowest 1%."""
    rows = sorted(rows, key=lambda row: row[0])
    latencies = np.array([latency for latency, _ in rows]) * 1000
    share = max(1, len(rows) // 100)
    middle = rows[len(rows) // 2 - share // 2 :][:share]
    slowest = rows[-share:]

    def means(group: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
        return {stage: round(1000 * float(np.mean([row[stage] for _, row in group])), 1) for stage in STAGES}

    p50, p99 = np.percentile(latencies, [50, 99])
    return {
        "requests": len(rows),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "middle_1pct_ms": means(middle),
        "slowest_1pct_ms": means(slowest),
    }


async def measure(rate: float, seconds: float, *, freeze: bool) -> dict[str, Any]:
    pixels = load_pixels()
    rows = itertools.cycle([pixels[index : index + 1] for index in range(pixels.shape[0])])
    async with (
        local_bus() as bus,
        BenchStack(StackConfig(models=("digits",)), bus_connection=bus[0], bus_pid=bus[1]),
    ):
        settings = ProducerSettings(connection=bus[0], reply_timeout_s=60, coalesce=False)
        with _ReplyTimes() as replies:
            async with ScoringProducer(settings=settings) as producer:
                scorer = _TimedScorer(producer)
                await asyncio.gather(
                    *(scorer.score_timed(next(rows), time.time()) for _ in range(50))
                )  # warm
                scorer.times.clear()
                if freeze:
                    freeze_start_up_heap()
                start = time.time() + 0.2
                tasks = []
                for index in range(int(rate * seconds)):
                    scheduled = start + index / rate
                    await asyncio.sleep(max(0.0, scheduled - time.time()))
                    tasks.append(asyncio.create_task(scorer.score_timed(next(rows), scheduled)))
                results = await asyncio.gather(*tasks, return_exceptions=True)
                await scorer.close()
    failed = sum(isinstance(result, BaseException) for result in results)
    done = [(request_id, times) for request_id, times in scorer.times.items() if "read" in times]
    measured = [
        (times["resumed"] - times["scheduled"], stages(times, replies.enqueued[request_id]))
        for request_id, times in done[int(len(done) * WARMUP_SHARE) :]
        if request_id in replies.enqueued
    ]
    return {"rate_per_s": rate, "failed": failed} | breakdown(measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=600.0, help="single-row requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--freeze", action="store_true", help="freeze this process's start-up objects")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be > 0")
    result = asyncio.run(measure(args.rate, args.seconds, freeze=args.freeze))
    print(f"rate {result['rate_per_s']:g}/s, {result['requests']} requests ({result['failed']} failed)")
    print(f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; stage means, ms:")
    print(f"{'stage':14s} {'middle 1%':>10s} {'slowest 1%':>11s}")
    for stage in STAGES:
        print(f"{stage:14s} {result['middle_1pct_ms'][stage]:10.1f} {result['slowest_1pct_ms'][stage]:11.1f}")


if __name__ == "__main__":
    main()
