"""Durability across SIGKILL, bad input at the protocol level, scheduling, and a sync-client smoke."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from azure.servicebus import ServiceBusClient as SyncServiceBusClient
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError
from proton import Message
from proton.utils import BlockingConnection, SendException

from qscore_local.bus import queue_counts
from qscore_local.bus.launcher import BusEndpoint
from tests.fixtures.bus import StartBus


async def test_sigkill_loses_no_acknowledged_message_and_frees_locks(start_bus: StartBus) -> None:
    local_bus = start_bus()
    assert local_bus.endpoint is not None
    connection_string = local_bus.endpoint.connection_string
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender("scoring-requests") as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(50)])
        receiver = client.get_queue_receiver("scoring-requests")
        async with receiver:
            locked = await receiver.receive_messages(max_message_count=5, max_wait_time=1)
            assert len(locked) == 5
            local_bus.kill()
    await asyncio.to_thread(local_bus.start)
    counts = (await queue_counts(connection_string))["scoring-requests"]
    assert (counts.active, counts.locked) == (50, 0)
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_receiver("scoring-requests", prefetch_count=50) as receiver,
    ):
        bodies: list[str] = []
        while len(bodies) < 50:
            batch = await receiver.receive_messages(max_message_count=50, max_wait_time=1)
            assert batch
            for message in batch:
                await receiver.complete_message(message)
            bodies += [str(message) for message in batch]
    assert bodies == [f"m{i}" for i in range(50)]


async def test_oversized_message_is_refused_by_sdk_and_endpoint(bus: BusEndpoint) -> None:
    async with (
        ServiceBusClient.from_connection_string(bus.connection_string) as client,
        client.get_queue_sender("test-small") as sender,
    ):
        with pytest.raises(MessageSizeExceededError):
            await sender.send_messages(ServiceBusMessage(b"x" * 8000))
        await sender.send_messages(ServiceBusMessage(b"fits"))  # the link is still usable
    # A client that ignores the advertised max-message-size gets a rejected transfer.
    connection = BlockingConnection(f"amqp://127.0.0.1:{bus.port}", timeout=5, allowed_mechs="ANONYMOUS")
    try:
        sender = connection.create_sender("test-small")
        with pytest.raises(SendException):
            sender.send(Message(body=b"x" * 8000))
    finally:
        connection.close()
    counts = (await queue_counts(bus.connection_string))["test-small"]
    assert counts.active == 1


async def test_garbage_and_session_less_sends_are_rejected_not_fatal(bus: BusEndpoint) -> None:
    connection = BlockingConnection(f"amqp://127.0.0.1:{bus.port}", timeout=5, allowed_mechs="ANONYMOUS")
    try:
        with pytest.raises(SendException):
            connection.create_sender("test-sessions").send(Message(body="no session id"))
    finally:
        connection.close()
    async with (
        ServiceBusClient.from_connection_string(bus.connection_string) as client,
        client.get_queue_sender("test-sessions") as sender,
    ):
        with pytest.raises(ServiceBusError):
            await sender.send_messages(ServiceBusMessage("no session id"))
    assert "test-sessions" in await queue_counts(bus.connection_string)


async def test_scheduled_messages_count_then_arrive(bus: BusEndpoint, fresh_queue: str) -> None:
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.8)
            (sequence_number,) = await sender.schedule_messages(ServiceBusMessage("later"), when)
            assert sequence_number > 0
        counts = (await queue_counts(bus.connection_string))[fresh_queue]
        assert (counts.scheduled, counts.active) == (1, 0)
        async with client.get_queue_receiver(fresh_queue) as receiver:
            (message,) = await receiver.receive_messages(max_wait_time=3)
            assert str(message) == "later"
            await receiver.complete_message(message)


def test_sync_client_smoke(bus: BusEndpoint, fresh_queue: str) -> None:
    with SyncServiceBusClient.from_connection_string(bus.connection_string) as client:
        with client.get_queue_sender(fresh_queue) as sender:
            sender.send_messages([ServiceBusMessage("sync-1"), ServiceBusMessage("sync-2")])
        with client.get_queue_receiver(fresh_queue) as receiver:
            received = receiver.receive_messages(max_message_count=2, max_wait_time=1)
            assert [str(message) for message in received] == ["sync-1", "sync-2"]
            for message in received:
                receiver.complete_message(message)
