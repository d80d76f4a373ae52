"""ReplySender.deliver: per-reply outcomes, batched in the normal case, one by one only to find
the reply a refused transfer held. Fakes for the branches, then the real local bus for a reply
too large for its queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from qscore.contracts import ReplyStatus, ScoreReply, Tensor
from qscore.transport import ReplyAddress, ReplySender, ReplySendError

Refusal = Callable[[list[str]], Exception | None]  # correlation ids of one transfer -> its error


def _reply(request_id: str, rows: int = 1) -> ScoreReply:
    outputs = {"label": Tensor.from_numpy(np.zeros((rows, 1), np.int64))}
    return ScoreReply(request_id=request_id, status=ReplyStatus.OK, model="m", outputs=outputs)


def _ids(transfer: Any) -> list[str]:
    messages = transfer.messages if isinstance(transfer, FakeBatch) else [transfer]
    ids = [message.properties.correlation_id for message in messages]
    return [value.decode() if isinstance(value, bytes) else str(value) for value in ids]


@dataclass
class FakeBatch:
    messages: list[Any] = field(default_factory=list)

    def add_message(self, message: Any) -> None:
        if len(self.messages) >= 3:
            raise ValueError("full")
        self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)


@dataclass
class RefusingSender:
    refuse: Refusal
    transfers: list[list[str]] = field(default_factory=list)
    closed: bool = False

    async def create_message_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_messages(self, transfer: Any, timeout: float | None = None) -> None:  # noqa: ASYNC109
        ids = _ids(transfer)
        self.transfers.append(ids)
        error = self.refuse(ids)
        if error is not None:
            raise error

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeClient:
    refusals: dict[str, Refusal]
    senders: dict[str, RefusingSender] = field(default_factory=dict)

    def get_queue_sender(self, queue: str) -> RefusingSender:
        return self.senders.setdefault(queue, RefusingSender(self.refusals.get(queue, lambda ids: None)))


def _not_allowed(bad: str) -> Refusal:
    def refuse(ids: list[str]) -> Exception | None:
        return ServiceBusError("requires sessions", condition="amqp:not-allowed") if bad in ids else None

    return refuse


async def test_one_refused_reply_is_found_and_the_rest_are_sent() -> None:
    client = FakeClient({"a": _not_allowed("r4")})
    sender = ReplySender(client)  # type: ignore[arg-type]
    replies = [(ReplyAddress("a", "s"), _reply(f"r{i}")) for i in range(7)]
    failures = await sender.deliver(replies)
    assert [failure is None for failure in failures] == [True, True, True, True, False, True, True]
    refused = failures[4]
    assert refused is not None and refused.permanent and "requires sessions" in refused.detail
    # Batched as usual (3, 3, 1); only the refused transfer went again one by one.
    assert client.senders["a"].transfers == [
        ["r0", "r1", "r2"],
        ["r3", "r4", "r5"],
        ["r3"],
        ["r4"],
        ["r5"],
        ["r6"],
    ]
    with pytest.raises(ReplySendError, match="1 of 2 replies not sent"):
        await sender.send([(ReplyAddress("a", "s"), _reply("r4")), (ReplyAddress("a", "s"), _reply("ok"))])


async def test_transient_failures_hit_only_their_transfer_and_a_missing_queue_only_its_replies() -> None:
    flaky_once: list[int] = []

    def flaky(ids: list[str]) -> Exception | None:
        if "t3" in ids and not flaky_once:
            flaky_once.append(1)
            return ServiceBusConnectionError(message="connection lost")
        return None

    def missing(ids: list[str]) -> Exception | None:
        return MessagingEntityNotFoundError(message="The messaging entity 'gone' could not be found.")

    client = FakeClient({"t": flaky, "gone": missing})
    sender = ReplySender(client)  # type: ignore[arg-type]
    replies = [(ReplyAddress("t", "s"), _reply(f"t{i}")) for i in range(6)]
    replies += [(ReplyAddress("gone", "s"), _reply(f"g{i}")) for i in range(4)]
    failures = await sender.deliver(replies)
    transient = [i for i, f in enumerate(failures) if f is not None and not f.permanent]
    permanent = [i for i, f in enumerate(failures) if f is not None and f.permanent]
    assert transient == [3, 4, 5]  # the second transfer to "t" only, not retried one by one
    assert permanent == [6, 7, 8, 9]
    assert client.senders["gone"].transfers == [["g0", "g1", "g2"]]  # the queue refused: no more tries
    assert client.senders["gone"].closed  # and its link is dropped (a later queue gets a fresh one)


async def test_a_reply_too_large_for_its_queue_is_refused_alone(bus: Any) -> None:
    from azure.servicebus import ServiceBusReceiveMode
    from azure.servicebus.aio import ServiceBusClient

    small_queue = "test-small"  # 4 KiB messages
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        sender = ReplySender(client)
        replies = [(ReplyAddress(small_queue), _reply(f"s{i}")) for i in range(3)]
        replies.insert(1, (ReplyAddress(small_queue), _reply("huge", rows=2000)))
        try:
            failures = await sender.deliver(replies)
        finally:
            await sender.close()
        receiver = client.get_queue_receiver(
            small_queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        )
        async with receiver:
            received: list[str] = []
            # The queue is shared with other tests: count only this test's replies.
            mine = {"s0", "s1", "s2", "huge"}
            while len(received) < 3 and (batch := await receiver.receive_messages(10, max_wait_time=3)):
                received += [str(m.correlation_id) for m in batch if str(m.correlation_id) in mine]
    assert [failure is None for failure in failures] == [True, False, True, True]
    assert failures[1] is not None and failures[1].permanent
    assert sorted(received) == ["s0", "s1", "s2"]


def test_an_authorization_refusal_of_the_entity_is_permanent_for_the_queue() -> None:
    from azure.servicebus.exceptions import ServiceBusAuthenticationError

    from qscore.transport.replies import classify_send_error

    error = ServiceBusAuthenticationError(message="Service Bus has encountered an error.")
    error.__cause__ = Exception(
        "CBS Token authentication failed.\nStatus code: 404\n"
        "Description: The messaging entity 'q' could not be found."
    )
    failure = classify_send_error(error)
    assert failure.permanent and failure.queue_wide
    assert failure.detail == "The messaging entity 'q' could not be found."
    error.__cause__ = Exception("CBS Token authentication failed.\nStatus code: 503\nDescription: busy")
    assert not classify_send_error(error).permanent  # the service was busy: try again
