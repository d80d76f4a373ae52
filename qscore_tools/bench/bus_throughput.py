"""Throughput of the local Service Bus endpoint through the real SDK: batched send, peek-lock
receive, complete. `python -m qscore_tools.bench.bus_throughput --messages 20000`.

Clients run in separate processes (the pure-Python SDK costs more CPU per message than the
endpoint), so the figure that matters for "is the endpoint the bottleneck" is printed next to
the wall-clock rate: the endpoint's own CPU time (user + system, from psutil) per 1,000 messages
and messages per endpoint CPU-second. The endpoint is single-threaded, so that is one core's
capacity whatever the clients cost. The endpoint is durable (SQLite in a temporary directory)
unless `--in-memory` is given.

`--settle` picks how receivers complete what they received:
- `batch`: one `com.microsoft:update-disposition` request per received batch on the receiver's
  management link (how the worker settles, see qscore/transport/settlement.py);
- `concurrent`: `complete_message` for every message of the batch at once (asyncio.gather);
- `serial`: `complete_message` one message at a time, each awaited (a round trip per message).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psutil

from qscore_local.bus.config import QueueConfig
from qscore_local.bus.launcher import LocalBus
from qscore_local.bus.serve import connection_string

QUEUE = "bench-throughput"
SETTLE_BATCH, SETTLE_CONCURRENT, SETTLE_SERIAL = "batch", "concurrent", "serial"
SETTLE_MODES = (SETTLE_BATCH, SETTLE_CONCURRENT, SETTLE_SERIAL)


@dataclass(frozen=True)
class ThroughputResult:
    messages: int
    seconds: float
    messages_per_s: float
    endpoint_cpu_s: float
    endpoint_user_s: float
    endpoint_system_s: float
    endpoint_cpu_ms_per_1000: float
    messages_per_endpoint_cpu_s: float
    senders: int
    receivers: int
    batch_size: int
    settle: str
    durable: bool | None  # None: an endpoint started elsewhere (--port)


async def _send(connection_string: str, count: int, batch_size: int) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    body = b'{"features": [5.1, 3.5, 1.4, 0.2], "model": "iris"}'
    client = ServiceBusClient.from_connection_string(connection_string)
    async with client, client.get_queue_sender(QUEUE) as sender:
        for start in range(0, count, batch_size):
            batch = [ServiceBusMessage(body) for _ in range(min(batch_size, count - start))]
            await sender.send_messages(batch)


async def _complete(receiver: Any, messages: list[Any], settle: str) -> None:
    if settle == SETTLE_BATCH and messages:
        # The SDK's own many-token settlement (private; the worker guards it the same way).
        await receiver._settle_message_via_mgmt_link("completed", [str(m.lock_token) for m in messages])
        for message in messages:
            message._settled = True
    elif settle == SETTLE_CONCURRENT:
        await asyncio.gather(*(receiver.complete_message(message) for message in messages))
    else:
        for message in messages:
            await receiver.complete_message(message)


async def _receive(
    connection_string: str, done: Synchronized, total: int, prefetch: int, settle: str
) -> None:
    from azure.servicebus.aio import ServiceBusClient

    client = ServiceBusClient.from_connection_string(connection_string)
    async with client, client.get_queue_receiver(QUEUE, prefetch_count=prefetch) as receiver:
        while done.value < total:
            messages = await receiver.receive_messages(max_message_count=prefetch, max_wait_time=0.5)
            await _complete(receiver, messages, settle)
            with done.get_lock():
                done.value += len(messages)


def _sender_process(connection_string: str, count: int, batch_size: int) -> None:
    asyncio.run(_send(connection_string, count, batch_size))


def _receiver_process(
    connection_string: str, done: Synchronized, total: int, prefetch: int, settle: str
) -> None:
    asyncio.run(_receive(connection_string, done, total, prefetch, settle))


def run(
    connection_string: str,
    endpoint_pid: int | None,
    *,
    messages: int,
    senders: int,
    receivers: int,
    batch_size: int,
    settle: str = SETTLE_BATCH,
    durable: bool | None = True,
) -> ThroughputResult:
    """Send `messages` through the endpoint and receive + complete them all; measure its CPU."""
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    endpoint = psutil.Process(endpoint_pid) if endpoint_pid else None
    before = endpoint.cpu_times() if endpoint else None
    started = time.perf_counter()
    share = messages // senders
    workers = [
        context.Process(target=_sender_process, args=(connection_string, share, batch_size))
        for _ in range(senders)
    ]
    workers += [
        context.Process(
            target=_receiver_process, args=(connection_string, done, share * senders, batch_size, settle)
        )
        for _ in range(receivers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    after = endpoint.cpu_times() if endpoint else None
    user = after.user - before.user if after and before else 0.0
    system = after.system - before.system if after and before else 0.0
    cpu, total = user + system, int(done.value)
    return ThroughputResult(
        messages=total,
        seconds=round(seconds, 3),
        messages_per_s=round(total / seconds, 1),
        endpoint_cpu_s=round(cpu, 3),
        endpoint_user_s=round(user, 3),
        endpoint_system_s=round(system, 3),
        endpoint_cpu_ms_per_1000=round(cpu * 1e6 / total, 1) if total else 0.0,
        messages_per_endpoint_cpu_s=round(total / cpu, 1) if cpu else 0.0,
        senders=senders,
        receivers=receivers,
        batch_size=batch_size,
        settle=settle,
        durable=durable,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100, help="send batch size and receive prefetch")
    parser.add_argument("--settle", choices=SETTLE_MODES, default=SETTLE_BATCH, help="how receivers complete")
    parser.add_argument("--in-memory", action="store_true", help="endpoint without SQLite file (not durable)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument(
        "--port", type=int, default=0, help=f"use an endpoint already on this port (it needs queue {QUEUE!r})"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    options: dict[str, Any] = {
        "messages": args.messages,
        "senders": args.senders,
        "receivers": args.receivers,
        "batch_size": args.batch_size,
        "settle": args.settle,
    }
    if args.port:
        address = connection_string("127.0.0.1", args.port)
        result = run(address, _pid_listening(args.port), durable=None, **options)
    else:
        queue = QueueConfig(name=QUEUE, lock_duration_s=60, max_delivery_count=10)
        with tempfile.TemporaryDirectory(prefix="qscore-bus-bench-") as data_dir:
            bus = LocalBus(queues=[queue], data_dir=None if args.in_memory else Path(data_dir))
            with bus as endpoint_info:
                result = run(endpoint_info.connection_string, bus.pid, durable=not args.in_memory, **options)
    print(json.dumps(asdict(result)) if args.json else _summary(result))


def _summary(result: ThroughputResult) -> str:
    store = {True: "SQLite WAL", False: "in memory", None: "as started"}[result.durable]
    return (
        f"{result.messages} messages sent+received+completed in {result.seconds:.2f}s: "
        f"{result.messages_per_s:,.0f} msg/s end to end ({result.senders} senders, "
        f"{result.receivers} receivers, batches of {result.batch_size}, settle={result.settle}, "
        f"store {store})\n"
        f"endpoint CPU: {result.endpoint_cpu_s:.2f} s (user {result.endpoint_user_s:.2f}, "
        f"system {result.endpoint_system_s:.2f}) = {result.endpoint_cpu_ms_per_1000:.0f} ms per "
        f"1,000 messages = {result.messages_per_endpoint_cpu_s:,.0f} messages per endpoint CPU-second"
    )


def _pid_listening(port: int) -> int | None:
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return connection.pid
    return None


if __name__ == "__main__":
    main()
