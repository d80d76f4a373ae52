"""Send ScoreReply messages to reply queues, many per AMQP transfer.

A reply carries `correlation_id` = request id and `session_id` = the request's
`reply_to_session_id`, so a producer listening on its own session gets only its replies and
can drop a duplicate (at-least-once delivery: a worker that crashes after sending but before
completing the request sends the reply again on redelivery). With a `traceparent` on its
address, the reply carries it as an application property (W3C trace context), so the
producer's trace shows the reply arriving.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qscore.contracts import REPLY_CONTENT_TYPE, ScoreReply

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
    from azure.servicebus.amqp import AmqpAnnotatedMessage


@dataclass(frozen=True)
class ReplyAddress:
    """Where one reply goes: a queue and (for session-enabled reply queues) the producer's session."""

    queue: str
    session_id: str | None = None
    traceparent: str | None = None  # the trace context the reply carries (the worker's span)


def reply_message(address: ReplyAddress, reply: ScoreReply) -> ServiceBusMessage:
    """The Service Bus message for one reply."""
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        reply.model_dump_json(exclude_none=True),
        session_id=address.session_id,
        correlation_id=reply.request_id,
        content_type=REPLY_CONTENT_TYPE,
        application_properties=_trace_properties(address),  # type: ignore[arg-type]
    )


def _trace_properties(address: ReplyAddress) -> dict[str, str] | None:
    return {"traceparent": address.traceparent} if address.traceparent else None


def reply_amqp_message(address: ReplyAddress, reply: ScoreReply) -> AmqpAnnotatedMessage:
    """The same message as `reply_message`, built as the AMQP message the SDK sends: about 15 us
    cheaper per reply (ServiceBusMessage's property setters re-list its fields many times), and
    the sender packs it into a batch just the same. A fresh message id, as the SDK would give."""
    from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageProperties

    properties = AmqpMessageProperties(
        message_id=str(uuid.uuid4()),
        group_id=address.session_id,  # the AMQP name of a Service Bus session id
        correlation_id=reply.request_id,
        content_type=REPLY_CONTENT_TYPE,
    )
    body = reply.model_dump_json(exclude_none=True).encode()
    return AmqpAnnotatedMessage(
        data_body=body, properties=properties, application_properties=_trace_properties(address)
    )


class ReplySender:
    """Batched reply sends over one ServiceBusClient; one SDK sender per reply queue, opened lazily."""

    def __init__(self, client: ServiceBusClient, *, send_timeout_s: float | None = 30.0) -> None:
        self._client = client
        self._send_timeout_s = send_timeout_s
        self._senders: dict[str, tuple[ServiceBusSender, asyncio.Lock]] = {}
        self._opening = asyncio.Lock()

    async def send(self, replies: Sequence[tuple[ReplyAddress, ScoreReply]]) -> None:
        """Send all replies; returns once the broker has accepted every one (raises otherwise)."""
        by_queue: dict[str, list[AmqpAnnotatedMessage]] = defaultdict(list)
        for address, reply in replies:
            by_queue[address.queue].append(reply_amqp_message(address, reply))
        for queue, messages in by_queue.items():
            sender, lock = await self._sender(queue)
            # One send at a time per link: the SDK does not guard concurrent sends on one
            # sender (frames of two batches interleave, and a failed send's reopen races).
            async with lock:
                await self._send_batched(sender, messages)

    async def _sender(self, queue: str) -> tuple[ServiceBusSender, asyncio.Lock]:
        entry = self._senders.get(queue)
        if entry is None:
            async with self._opening:
                entry = self._senders.get(queue)
                if entry is None:
                    entry = (self._client.get_queue_sender(queue), asyncio.Lock())
                    self._senders[queue] = entry
        return entry

    async def _send_batched(self, sender: ServiceBusSender, messages: list[AmqpAnnotatedMessage]) -> None:
        # Pack as many messages per transfer as the link's max message size allows.
        batch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except ValueError:  # MessageSizeExceededError: this batch is full
                if len(batch) == 0:
                    raise
                await self._send_one(sender, batch)
                batch = await sender.create_message_batch()
                batch.add_message(message)
        if len(batch):
            await self._send_one(sender, batch)

    async def _send_one(self, sender: ServiceBusSender, batch: Any) -> None:
        await sender.send_messages(batch, timeout=self._send_timeout_s)

    async def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        for sender, lock in senders:
            async with lock:
                await sender.close()
