"""Request-batch messages answered one reply message per item vs in reply-batch messages.

One worker process (default middleware) drains request-batch messages of `--items` single-row
digits items each, sent straight to the request queue with and without the reply-batch opt-in
(`accept`, docs/contract.md), alternating `--rounds` times in one run so the ratio is within the
run. Per phase: request-batch messages per second (wall, from the first send to the last reply
read), the worker's CPU-seconds (psutil) and the reply messages read. Replies are read by this
process on its own session (receive-and-delete).

    python -m qscore_tools.bench.reply_batch_drain --messages 40 --items 128 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import numpy as np
import psutil

from qscore.contracts import REPLY_BATCH_CONTENT_TYPE, decode_reply_batch, is_reply_batch
from qscore.producer import OutgoingRequest
from qscore.producer.coalesce import batch_item
from qscore.producer.requests import batch_message

REPLY_QUEUE = "scoring-replies"
REQUEST_QUEUE = "scoring-requests"


def _messages(count: int, items: int, session: str, *, opt_in: bool) -> list[Any]:
    rng = np.random.default_rng(0)
    encoded = [
        batch_item(OutgoingRequest.build("digits", {"pixels": rng.random((1, 64), dtype=np.float32)}))
        for _ in range(items)
    ]
    # The same items in every message, each with request ids of its own.
    out = []
    for _ in range(count):
        fresh = [
            b'{"request_id":"' + uuid.uuid4().hex.encode() + b'",' + item.split(b",", 1)[1]
            for item in encoded
        ]
        accept = REPLY_BATCH_CONTENT_TYPE if opt_in else None
        out.append(batch_message(fresh, reply_to=REPLY_QUEUE, reply_to_session_id=session, accept=accept))
    return out


async def _phase(
    client: Any, process: psutil.Process, count: int, items: int, *, opt_in: bool
) -> dict[str, Any]:
    from azure.servicebus import ServiceBusReceiveMode

    session = f"drain-{uuid.uuid4().hex[:8]}"
    messages = _messages(count, items, session, opt_in=opt_in)
    expected = count * items
    replies = reply_messages = 0
    async with (
        client.get_queue_sender(REQUEST_QUEUE) as sender,
        client.get_queue_receiver(
            REPLY_QUEUE,
            session_id=session,
            receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
            prefetch_count=2000,
        ) as receiver,
    ):
        before = process.cpu_times()
        started = time.monotonic()
        for start in range(0, count, 10):  # 10 messages a send: ~1.7 MB
            await sender.send_messages(messages[start : start + 10])
        deadline = started + 300
        while replies < expected and time.monotonic() < deadline:
            for message in await receiver.receive_messages(max_message_count=2000, max_wait_time=1):
                reply_messages += 1
                body = b"".join(message.body)
                replies += len(decode_reply_batch(body)) if is_reply_batch(message.content_type) else 1
        wall = time.monotonic() - started
        after = process.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "opt_in": opt_in,
        "request_batch_messages": count,
        "replies": replies,
        "reply_messages": reply_messages,
        "wall_s": round(wall, 2),
        "messages_per_s": round(count / wall, 1),
        "items_per_s": round(replies / wall, 1),
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_ms_per_message": round(1000 * cpu / count, 1),
    }


async def _run(count: int, items: int, rounds: int) -> dict[str, Any]:
    from azure.servicebus.aio import ServiceBusClient

    from qscore_tools.bench.standalone import standalone_stack

    phases: list[dict[str, Any]] = []
    async with standalone_stack(workers=1, prefix="qscore-replybatch-") as stack:
        process = psutil.Process(stack.workers[0].pid)
        async with ServiceBusClient.from_connection_string(stack.connection) as client:
            await _phase(client, process, 4, items, opt_in=True)  # warm: links, model metadata
            for _ in range(rounds):
                for opt_in in (False, True):
                    phases.append(await _phase(client, process, count, items, opt_in=opt_in))
    off = [p for p in phases if not p["opt_in"]]
    on = [p for p in phases if p["opt_in"]]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(row[key] for row in rows) / len(rows)

    return {
        "phases": phases,
        "messages_per_s_ratio_on_off": round(mean(on, "messages_per_s") / mean(off, "messages_per_s"), 2),
        "worker_cpu_ratio_on_off": round(
            mean(on, "worker_cpu_ms_per_message") / mean(off, "worker_cpu_ms_per_message"), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40, help="request-batch messages per phase")
    parser.add_argument("--items", type=int, default=128, help="single-row items per message")
    parser.add_argument("--rounds", type=int, default=2, help="off/on phase pairs, alternating")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.messages, args.items, args.rounds)), indent=1))


if __name__ == "__main__":
    main()
