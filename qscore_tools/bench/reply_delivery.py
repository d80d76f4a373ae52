"""What reply isolation costs: `ReplySender.deliver` of micro-batches of replies to the local bus,
all deliverable (the normal case: packed transfers) vs one refused reply per batch (the batch's
transfer is refused, then its replies go one by one to find the refused one).

    python -m qscore_tools.bench.reply_delivery [--batches 40] [--batch-size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import numpy as np

from qscore.contracts import ReplyStatus, ScoreReply, Tensor
from qscore.transport import ReplyAddress, ReplySender
from qscore_local.bus.launcher import LocalBus

REPLY_QUEUE = "scoring-replies"  # session-enabled: a reply without a session is refused


def _reply(index: int) -> ScoreReply:
    outputs = {
        "label": Tensor.from_numpy(np.zeros((1, 1), np.int64)),
        "probabilities": Tensor.from_numpy(np.zeros((1, 10), np.float32)),
    }
    return ScoreReply(request_id=f"r{index}", status=ReplyStatus.OK, model="digits", outputs=outputs)


def _batches(count: int, size: int, *, refused: bool) -> list[list[tuple[ReplyAddress, ScoreReply]]]:
    batches = []
    for batch in range(count):
        replies = [(ReplyAddress(REPLY_QUEUE, "bench"), _reply(batch * size + i)) for i in range(size)]
        if refused:
            replies[size // 2] = (ReplyAddress(REPLY_QUEUE, None), replies[size // 2][1])
        batches.append(replies)
    return batches


async def _time(sender: ReplySender, batches: Sequence[list[tuple[ReplyAddress, ScoreReply]]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        await sender.deliver(batch)
    return time.perf_counter() - started


async def measure(batches: int, batch_size: int, rounds: int) -> dict[str, float]:
    """Replies per second delivered, for the normal case and with one refused reply per batch."""
    from azure.servicebus.aio import ServiceBusClient

    cases = {
        "all deliverable": _batches(batches, batch_size, refused=False),
        "one refused per batch": _batches(batches, batch_size, refused=True),
    }
    totals = dict.fromkeys(cases, 0.0)
    with LocalBus() as endpoint:
        async with ServiceBusClient.from_connection_string(endpoint.connection_string) as client:
            sender = ReplySender(client)
            await sender.deliver(cases["all deliverable"][0])  # open the link
            for _ in range(rounds):
                for name, case in cases.items():  # interleaved, so load drift hits both alike
                    totals[name] += await _time(sender, case)
            await sender.close()
    return {name: rounds * batches * batch_size / total for name, total in totals.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qscore_tools.bench.reply_delivery")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rates = asyncio.run(measure(args.batches, args.batch_size, args.rounds))
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} replies/s")
    normal, refused = rates["all deliverable"], rates["one refused per batch"]
    print(f"one refused reply per batch costs {normal / refused:.1f}x the time of the normal case")


if __name__ == "__main__":
    main()
