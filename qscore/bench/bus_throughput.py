"""Throughput of the local Service Bus endpoint through the real SDK: batched send, peek-lock
receive, complete. `python -m qscore.bench.bus_throughput --messages 20000`.

Clients run in separate processes (the pure-Python SDK costs more CPU per message than the
endpoint), so the figure that matters for "is the endpoint the bottleneck" is also printed:
messages per CPU-second of the endpoint process, which is single-threaded (one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass
from multiprocessing.sharedctypes import Synchronized

import psutil

from qscore.bus.config import QueueConfig
from qscore.bus.launcher import LocalBus
from qscore.bus.serve import connection_string

QUEUE = "bench-throughput"


@dataclass(frozen=True)
class ThroughputResult:
    messages: int
    seconds: float
    messages_per_s: float
    endpoint_cpu_s: float
    messages_per_endpoint_cpu_s: float
    senders: int
    receivers: int
    batch_size: int


async def _send(connection_string: str, count: int, batch_size: int) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    body = b'{"features": [5.1, 3.5, 1.4, 0.2], "model": "iris"}'
    client = ServiceBusClient.from_connection_string(connection_string)
    async with client, client.get_queue_sender(QUEUE) as sender:
        for start in range(0, count, batch_size):
            batch = [ServiceBusMessage(body) for _ in range(min(batch_size, count - start))]
            await sender.send_messages(batch)


async def _receive(connection_string: str, done: Synchronized, total: int, prefetch: int) -> None:
    from azure.servicebus.aio import ServiceBusClient

    client = ServiceBusClient.from_connection_string(connection_string)
    async with client, client.get_queue_receiver(QUEUE, prefetch_count=prefetch) as receiver:
        while done.value < total:
            messages = await receiver.receive_messages(max_message_count=prefetch, max_wait_time=0.5)
            for message in messages:
                await receiver.complete_message(message)
            with done.get_lock():
                done.value += len(messages)


def _sender_process(connection_string: str, count: int, batch_size: int) -> None:
    asyncio.run(_send(connection_string, count, batch_size))


def _receiver_process(connection_string: str, done: Synchronized, total: int, prefetch: int) -> None:
    asyncio.run(_receive(connection_string, done, total, prefetch))


def run(
    connection_string: str,
    endpoint_pid: int | None,
    *,
    messages: int,
    senders: int,
    receivers: int,
    batch_size: int,
) -> ThroughputResult:
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    endpoint = psutil.Process(endpoint_pid) if endpoint_pid else None
    cpu_before = sum(endpoint.cpu_times()[:2]) if endpoint else 0.0
    started = time.perf_counter()
    share = messages // senders
    workers = [
        context.Process(target=_sender_process, args=(connection_string, share, batch_size))
        for _ in range(senders)
    ]
    workers += [
        context.Process(target=_receiver_process, args=(connection_string, done, share * senders, batch_size))
        for _ in range(receivers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    cpu = (sum(endpoint.cpu_times()[:2]) - cpu_before) if endpoint else 0.0
    total = int(done.value)
    return ThroughputResult(
        messages=total,
        seconds=round(seconds, 3),
        messages_per_s=round(total / seconds, 1),
        endpoint_cpu_s=round(cpu, 3),
        messages_per_endpoint_cpu_s=round(total / cpu, 1) if cpu else 0.0,
        senders=senders,
        receivers=receivers,
        batch_size=batch_size,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument(
        "--port", type=int, default=0, help=f"use an endpoint already on this port (it needs queue {QUEUE!r})"
    )
    args = parser.parse_args(argv)
    options = {
        "messages": args.messages,
        "senders": args.senders,
        "receivers": args.receivers,
        "batch_size": args.batch_size,
    }
    if args.port:
        result = run(connection_string("127.0.0.1", args.port), _pid_listening(args.port), **options)
    else:
        queue = QueueConfig(name=QUEUE, lock_duration_s=60, max_delivery_count=10)
        with LocalBus(queues=[queue]) as endpoint_info:
            pid = _pid_listening(endpoint_info.port)
            result = run(endpoint_info.connection_string, pid, **options)
    if args.json:
        print(json.dumps(asdict(result)))
        return
    print(
        f"{result.messages} messages sent+received+completed in {result.seconds:.2f}s: "
        f"{result.messages_per_s:,.0f} msg/s end to end "
        f"({result.senders} senders, {result.receivers} receivers, "
        f"batches of {result.batch_size}); endpoint used {result.endpoint_cpu_s:.2f} CPU-s = "
        f"{result.messages_per_endpoint_cpu_s:,.0f} msg per endpoint CPU-second"
    )


def _pid_listening(port: int) -> int | None:
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return connection.pid
    return None


if __name__ == "__main__":
    main()
