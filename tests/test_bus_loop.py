"""The endpoint's own event loop (qscore_local/bus/loop.py): dropped sockets, management-link batch
settlement through the real SDK, and proton's Container kept as a working fallback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from qscore_local.bus import queue_counts
from qscore_local.bus.launcher import BusEndpoint
from qscore_local.bus.serve import REACTOR_ENV
from tests.fixtures.bus import StartBus


async def _send_receive_complete(connection_string: str, queue: str, count: int) -> list[str]:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(count)])
        async with client.get_queue_receiver(queue, prefetch_count=count) as receiver:
            bodies: list[str] = []
            while len(bodies) < count:
                batch = await receiver.receive_messages(max_message_count=count, max_wait_time=2)
                assert batch
                await asyncio.gather(*(receiver.complete_message(message) for message in batch))
                bodies += [str(message) for message in batch]
    return bodies


def _drop_connections(port: int) -> None:
    # A peer that vanishes mid-handshake, one that sends garbage, one that connects and leaves.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"AMQP\x03\x01\x00\x00")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\xff" * 64)
    socket.create_connection(("127.0.0.1", port)).close()


async def test_dropped_and_garbage_connections_leave_the_endpoint_serving(
    bus: BusEndpoint, fresh_queue: str
) -> None:
    await asyncio.to_thread(_drop_connections, bus.port)
    bodies = await _send_receive_complete(bus.connection_string, fresh_queue, 20)
    assert bodies == [f"m{i}" for i in range(20)]
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert (counts.active, counts.locked) == (0, 0)


async def test_batch_settlement_on_management_link_confirms_without_sdk_warnings(
    bus: BusEndpoint, fresh_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="azure")
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"b{i}") for i in range(30)])
        async with client.get_queue_receiver(fresh_queue, prefetch_count=30) as receiver:
            received: list[ServiceBusReceivedMessage] = []
            while len(received) < 30:
                received += await receiver.receive_messages(max_message_count=30, max_wait_time=2)
            tokens = [str(message.lock_token) for message in received]
            # What the worker's batch settlement calls (qscore/transport/settlement.py).
            await receiver._settle_message_via_mgmt_link("completed", tokens)
            await receiver.receive_messages(max_message_count=1, max_wait_time=0.3)  # let dispositions arrive
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert (counts.active, counts.locked) == (0, 0)
    assert not [record for record in caplog.records if "callback failed" in record.getMessage()]


async def test_proton_container_fallback_still_serves(
    start_bus: StartBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REACTOR_ENV, "container")
    local_bus = await asyncio.to_thread(start_bus)
    assert local_bus.endpoint is not None
    bodies = await _send_receive_complete(local_bus.endpoint.connection_string, "scoring-requests", 10)
    assert bodies == [f"m{i}" for i in range(10)]
