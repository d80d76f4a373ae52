"""The local endpoint driven through the real azure-servicebus SDK (async API), one bullet of
issue 3 per test. The endpoint runs as a subprocess (`bus` fixture) on a free loopback port."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusAuthenticationError,
    SessionCannotBeLockedError,
)

from qscore_local.bus import queue_counts
from qscore_local.bus.launcher import BusEndpoint

WAIT = 1.0


def client_for(bus: BusEndpoint) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(bus.connection_string)


async def send(bus: BusEndpoint, queue: str, *messages: ServiceBusMessage) -> None:
    async with client_for(bus) as client, client.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


async def test_properties_and_broker_annotations_round_trip(bus: BusEndpoint, fresh_queue: str) -> None:
    sent = ServiceBusMessage(
        b'{"x": 1}',
        message_id="m-1",
        correlation_id="c-1",
        reply_to="scoring-replies",
        reply_to_session_id="producer-7",
        content_type="application/json",
        subject="score",
        time_to_live=datetime.timedelta(seconds=60),
        application_properties={"model": "iris", "version": 3},
    )
    await send(bus, fresh_queue, sent)
    async with client_for(bus) as client, client.get_queue_receiver(fresh_queue) as receiver:
        (received,) = await receiver.receive_messages(max_message_count=5, max_wait_time=WAIT)
        assert b"".join(received.body) == b'{"x": 1}'
        assert (received.message_id, received.correlation_id) == ("m-1", "c-1")
        assert (received.reply_to, received.reply_to_session_id) == ("scoring-replies", "producer-7")
        assert (received.content_type, received.subject) == ("application/json", "score")
        assert received.time_to_live == datetime.timedelta(seconds=60)
        assert received.application_properties == {b"model": b"iris", b"version": 3}
        assert received.delivery_count == 0
        assert received.sequence_number is not None and received.sequence_number > 0
        assert received.enqueued_time_utc is not None
        assert received.locked_until_utc > datetime.datetime.now(datetime.UTC)
        assert isinstance(received.lock_token, uuid.UUID)
        await receiver.complete_message(received)
    assert (await queue_counts(bus.connection_string))[fresh_queue].total == 0


async def test_batched_sends_are_unpacked_in_order(bus: BusEndpoint, fresh_queue: str) -> None:
    async with client_for(bus) as client, client.get_queue_sender(fresh_queue) as sender:
        await sender.send_messages([ServiceBusMessage(f"list-{i}") for i in range(5)])
        batch = await sender.create_message_batch()
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"batch-{i}", session_id="ignored-here"))
        await sender.send_messages(batch)
    async with (
        client_for(bus) as client,
        client.get_queue_receiver(fresh_queue, prefetch_count=20) as receiver,
    ):
        bodies: list[str] = []
        while len(bodies) < 10:
            messages = await receiver.receive_messages(max_message_count=10, max_wait_time=WAIT)
            assert messages, f"only {bodies} arrived"
            for message in messages:
                bodies.append(str(message))
                await receiver.complete_message(message)
    assert bodies == [f"list-{i}" for i in range(5)] + [f"batch-{i}" for i in range(5)]


async def test_credit_limits_what_one_receive_takes(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, *[ServiceBusMessage(f"m{i}") for i in range(6)])
    async with client_for(bus) as client, client.get_queue_receiver(fresh_queue) as receiver:
        first = await receiver.receive_messages(max_message_count=2, max_wait_time=WAIT)
        assert len(first) == 2
        counts = (await queue_counts(bus.connection_string))[fresh_queue]
        assert counts.locked == 2 and counts.active == 4
        for message in first:
            await receiver.complete_message(message)


async def test_abandon_redelivers_with_count_plus_one(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, ServiceBusMessage("again"))
    async with client_for(bus) as client, client.get_queue_receiver(fresh_queue) as receiver:
        (first,) = await receiver.receive_messages(max_wait_time=WAIT)
        await receiver.abandon_message(first)
        (second,) = await receiver.receive_messages(max_wait_time=WAIT)
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == 1
        await receiver.complete_message(second)


async def test_dead_letter_with_reason_lands_in_sub_queue(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, ServiceBusMessage("poison"))
    async with client_for(bus) as client:
        async with client.get_queue_receiver(fresh_queue) as receiver:
            (message,) = await receiver.receive_messages(max_wait_time=WAIT)
            await receiver.dead_letter_message(message, reason="BadInput", error_description="no features")
        counts = (await queue_counts(bus.connection_string))[fresh_queue]
        assert (counts.active, counts.dead_letter) == (0, 1)
        async with client.get_queue_receiver(fresh_queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await dlq.receive_messages(max_wait_time=WAIT)
            assert str(dead) == "poison"
            assert (dead.dead_letter_reason, dead.dead_letter_error_description) == (
                "BadInput",
                "no features",
            )
            assert dead.dead_letter_source == fresh_queue
            await dlq.complete_message(dead)


async def test_lock_expiry_redelivers_and_old_lock_is_lost(bus: BusEndpoint) -> None:
    queue = "test-short-lock"
    await send(bus, queue, ServiceBusMessage("slow"))
    async with client_for(bus) as client, client.get_queue_receiver(queue) as receiver:
        (first,) = await receiver.receive_messages(max_wait_time=WAIT)
        await asyncio.sleep(2.3)
        (second,) = await receiver.receive_messages(max_wait_time=WAIT)
        assert second.sequence_number == first.sequence_number and second.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(first)
        await receiver.complete_message(second)


async def test_max_delivery_count_dead_letters(bus: BusEndpoint) -> None:
    queue = "test-short-lock"  # max delivery count 3
    await send(bus, queue, ServiceBusMessage("flaky"))
    async with client_for(bus) as client:
        async with client.get_queue_receiver(queue) as receiver:
            for _ in range(3):
                (message,) = await receiver.receive_messages(max_wait_time=WAIT)
                await receiver.abandon_message(message)
            assert await receiver.receive_messages(max_wait_time=0.3) == []
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await dlq.receive_messages(max_wait_time=WAIT)
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            await dlq.complete_message(dead)


async def test_ttl_expiry_dead_letters_or_drops_per_queue(bus: BusEndpoint) -> None:
    await send(bus, "test-ttl", ServiceBusMessage("stale"))
    await send(bus, "test-ttl-drop", ServiceBusMessage("stale"))
    await asyncio.sleep(1.3)
    counts = await queue_counts(bus.connection_string)
    assert (counts["test-ttl"].active, counts["test-ttl"].dead_letter) == (0, 1)
    assert counts["test-ttl-drop"].total == 0
    async with (
        client_for(bus) as client,
        client.get_queue_receiver("test-ttl", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq,
    ):
        (dead,) = await dlq.receive_messages(max_wait_time=WAIT)
        assert dead.dead_letter_reason == "TTLExpiredException"
        await dlq.complete_message(dead)


async def test_renew_lock_and_peek_through_management(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, ServiceBusMessage("a"), ServiceBusMessage("b"))
    async with client_for(bus) as client, client.get_queue_receiver(fresh_queue) as receiver:
        peeked = await receiver.peek_messages(max_message_count=5)
        assert [str(message) for message in peeked] == ["a", "b"]
        (message,) = await receiver.receive_messages(max_wait_time=WAIT)
        before = message.locked_until_utc
        await asyncio.sleep(0.05)
        renewed = await receiver.renew_message_lock(message)
        assert renewed > before
        await receiver.complete_message(message)
        (rest,) = await receiver.receive_messages(max_wait_time=WAIT)
        await receiver.complete_message(rest)


async def test_update_disposition_through_management(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, ServiceBusMessage("via-mgmt"))
    async with client_for(bus) as client, client.get_queue_receiver(fresh_queue) as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=WAIT)
        # The SDK's own fallback path (used when a link settlement is unconfirmed).
        await receiver._settle_message_via_mgmt_link("completed", [message.lock_token])
        with pytest.raises(MessageLockLostError):
            await receiver._settle_message_via_mgmt_link("completed", [uuid.uuid4()])
    assert (await queue_counts(bus.connection_string))[fresh_queue].total == 0


async def test_receive_and_delete_mode(bus: BusEndpoint, fresh_queue: str) -> None:
    await send(bus, fresh_queue, ServiceBusMessage("gone-on-read"))
    async with client_for(bus) as client:
        mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
        async with client.get_queue_receiver(fresh_queue, receive_mode=mode) as receiver:
            (message,) = await receiver.receive_messages(max_wait_time=WAIT)
            assert str(message) == "gone-on-read"
    await asyncio.sleep(0.1)
    assert (await queue_counts(bus.connection_string))[fresh_queue].total == 0


async def test_sessions_named_next_available_and_exclusive(bus: BusEndpoint) -> None:
    queue = "test-sessions"
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}", f"beta-{tag}"
    await send(
        bus, queue, ServiceBusMessage("a1", session_id=alpha), ServiceBusMessage("b1", session_id=beta)
    )
    async with client_for(bus) as client:
        async with client.get_queue_receiver(queue, session_id=alpha) as named:
            assert named.session.session_id == alpha
            assert named.session.locked_until_utc > datetime.datetime.now(datetime.UTC)
            (message,) = await named.receive_messages(max_message_count=5, max_wait_time=WAIT)
            assert (str(message), message.session_id) == ("a1", alpha)
            await named.complete_message(message)
            await named.session.set_state(b"checkpoint-1")
            assert await named.session.get_state() == b"checkpoint-1"
            await named.session.renew_lock()
            with pytest.raises(SessionCannotBeLockedError):
                async with client.get_queue_receiver(queue, session_id=alpha) as second:
                    await second.receive_messages(max_wait_time=0.2)
        async with client.get_queue_receiver(queue, session_id="__next__") as anyone:
            pass
        from azure.servicebus import NEXT_AVAILABLE_SESSION

        async with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION) as anyone:
            assert anyone.session.session_id == beta
            (message,) = await anyone.receive_messages(max_wait_time=WAIT)
            assert str(message) == "b1"
            await anyone.complete_message(message)


async def test_unknown_queue_is_refused_at_authorization(bus: BusEndpoint) -> None:
    # As on Service Bus, `$cbs` refuses a token for an entity that does not exist (issue 12).
    async with client_for(bus) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_sender("no-such-queue") as sender:
                await sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_receiver("no-such-queue") as receiver:
                await receiver.receive_messages(max_wait_time=0.2)
    assert "scoring-requests" in await queue_counts(bus.connection_string)  # still serving
