"""Unit tests for qscore.transport helpers (fakes stand in for the SDK here; the real SDK path
runs against the local bus in tests/test_worker_bus.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from qscore.contracts import REPLY_CONTENT_TYPE, ContractViolation, ErrorCode, ReplyStatus, ScoreReply
from qscore.scoring import ReplyPolicy, RequestEnvelope, reply_address_of
from qscore.transport import (
    ReplyAddress,
    ReplySender,
    TransportConfigError,
    application_properties,
    enqueued_at,
    message_body,
    reply_message,
    servicebus_client,
    traceparent,
)
from qscore.transport.receiving import buffered_count, receive_ready, set_further_pull
from qscore.transport.replies import outgoing_reply, reply_amqp_message


@dataclass
class FakeMessage:
    body: Any = b"{}"
    application_properties: dict[Any, Any] | None = None
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    enqueued_time_utc: datetime | None = None


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"abc", b"abc"), ("abc", b"abc"), (iter([b"a", b"bc"]), b"abc"), (bytearray(b"x"), b"x"), (42, b"")],
)
def test_message_body_joins_sections(body: Any, expected: bytes) -> None:
    assert message_body(FakeMessage(body=body)) == expected


def test_properties_and_traceparent_accept_bytes_keys() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message = FakeMessage(application_properties={b"traceparent": tp.encode(), "x": 1})
    assert traceparent(message) == tp
    assert application_properties(message) == {"traceparent": tp, "x": "1"}
    assert traceparent(FakeMessage()) is None


def test_the_worker_reads_the_trace_context_as_the_functions_app_does() -> None:
    """One reading (qscore.telemetry.trace_carrier): any case of the name, and Azure's
    Diagnostic-Id when a producer sent no traceparent."""
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert traceparent(FakeMessage(application_properties={"Traceparent": tp})) == tp
    assert traceparent(FakeMessage(application_properties={b"Diagnostic-Id": tp.encode()})) == tp
    both = {"Diagnostic-Id": "00-other", "traceparent": tp}
    assert traceparent(FakeMessage(application_properties=both)) == tp


def _reply_address(message: FakeMessage) -> ReplyAddress | None:
    """The reply address as the core decides it (`reply_address_of`, the one place), None when
    the request names none (`no_reply_address`)."""
    envelope = RequestEnvelope(
        "m1", reply_to=message.reply_to, reply_to_session_id=message.reply_to_session_id
    )
    try:
        return reply_address_of(envelope, ReplyPolicy.create("replies"))
    except ContractViolation as violation:
        assert violation.code == ErrorCode.NO_REPLY_ADDRESS
        return None


def test_enqueued_at_and_reply_address() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    message = FakeMessage(enqueued_time_utc=when, reply_to="replies", reply_to_session_id="s1")
    assert enqueued_at(message) == when.timestamp()
    assert _reply_address(message) == ReplyAddress("replies", "s1")
    assert _reply_address(FakeMessage()) is None and enqueued_at(FakeMessage()) is None


def _reply(request_id: str = "r1") -> ScoreReply:
    return ScoreReply(request_id=request_id, status=ReplyStatus.OK, model="digits", model_version="2")


def test_reply_message_carries_correlation_and_session() -> None:
    message = reply_message(ReplyAddress("replies", "s1"), _reply("r1"))
    assert message.correlation_id == "r1" and message.session_id == "s1"
    assert message.content_type == REPLY_CONTENT_TYPE
    assert ScoreReply.model_validate_json(b"".join(message.body)).request_id == "r1"


def test_reply_amqp_message_matches_reply_message() -> None:
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    batch = ServiceBusMessageBatch(max_size_in_bytes=1 << 20, amqp_transport=PyamqpTransport)
    batch.add_message(reply_amqp_message(ReplyAddress("replies", "s1"), _reply("r1")))
    (sent,) = batch._messages  # what the sender puts on the wire, as a ServiceBusMessage
    expected = reply_message(ReplyAddress("replies", "s1"), _reply("r1"))
    assert (sent.correlation_id, sent.session_id, sent.content_type) == ("r1", "s1", REPLY_CONTENT_TYPE)
    assert b"".join(sent.body) == b"".join(expected.body) and sent.message_id


@pytest.mark.parametrize("ttl_s", [None, 0.0, 30.0])
@pytest.mark.parametrize("binary", [False, True])
def test_a_reply_encoded_once_is_the_sdks_encoding(ttl_s: float | None, binary: bool) -> None:
    """The worker's reply batches take each reply encoded once (sdk_batch_encoding.encode_message +
    add_encoded): the same bytes, batch size and envelope as ServiceBusMessageBatch.add_message."""
    import numpy as np
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    from qscore.contracts import Tensor
    from qscore.transport import sdk_batch_encoding

    outputs = {"label": Tensor.from_numpy(np.array([[3]], np.int64), binary=binary)}
    reply = ScoreReply(request_id="r1", status=ReplyStatus.OK, model="digits", outputs=outputs)
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    address = ReplyAddress("replies", "s1", traceparent=traceparent, binary_reply=binary)
    for _ in range(3):  # the SDK's creation time is in whole seconds: retry across a second's edge
        now_ms = sdk_batch_encoding.creation_time_ms()
        theirs = ServiceBusMessageBatch(max_size_in_bytes=1 << 20, amqp_transport=PyamqpTransport)
        ours = ServiceBusMessageBatch(max_size_in_bytes=1 << 20, amqp_transport=PyamqpTransport)
        assert sdk_batch_encoding.encoded_adds(ours)
        for message_id in ("m1", "m2"):
            outgoing = outgoing_reply(address, reply, time_to_live_s=ttl_s, message_id=message_id)
            theirs.add_message(outgoing.amqp())
            encoded = outgoing.encoded(now_ms)
            assert encoded is not None
            assert sdk_batch_encoding.add_encoded(ours, encoded, message_id=message_id, session_id="s1")
        if sdk_batch_encoding.creation_time_ms() == now_ms:
            break
    assert ours._message == theirs._message  # envelope and data sections, byte for byte
    assert (ours.size_in_bytes, len(ours)) == (theirs.size_in_bytes, len(theirs))


def test_an_encoded_reply_that_does_not_fit_is_refused_as_the_sdk_refuses_it() -> None:
    from azure.servicebus import ServiceBusMessageBatch
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    from qscore.transport import sdk_batch_encoding

    outgoing = outgoing_reply(ReplyAddress("replies", "s1"), _reply("r1"), message_id="m1")
    encoded = outgoing.encoded(0)
    assert encoded is not None
    for limit in range(len(encoded), len(encoded) + 80):
        theirs = ServiceBusMessageBatch(max_size_in_bytes=limit, amqp_transport=PyamqpTransport)
        ours = ServiceBusMessageBatch(max_size_in_bytes=limit, amqp_transport=PyamqpTransport)
        try:
            theirs.add_message(outgoing.amqp())
        except ValueError:
            fits = False
        else:
            fits = True
        assert sdk_batch_encoding.add_encoded(ours, encoded, message_id="m1", session_id="s1") is fits
        assert (ours.size_in_bytes, len(ours)) == (theirs.size_in_bytes, len(theirs))


def test_the_direct_reply_encoder_makes_the_sdks_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker encodes replies itself only while that gives the SDK's bytes (checked once per
    process on samples of every form); otherwise (say, after an SDK upgrade) the SDK encodes."""
    from qscore.transport import amqp_encoding, sdk_batch_encoding

    assert amqp_encoding.matches_sdk()
    outgoing = outgoing_reply(
        ReplyAddress("replies", "s1", traceparent="tp"), _reply("r1"), time_to_live_s=30
    )
    sdk = sdk_batch_encoding.encode_message(
        outgoing.body,
        message_id=outgoing.message_id,
        correlation_id=outgoing.correlation_id,
        session_id=outgoing.session_id,
        content_type=outgoing.content_type,
        application_properties=outgoing.application_properties,
        time_to_live_ms=outgoing.time_to_live_ms,
        now_ms=1_000,
    )
    assert outgoing.encoded(1_000) == sdk
    amqp_encoding.matches_sdk.cache_clear()
    monkeypatch.setattr(amqp_encoding, "encode_reply_message", lambda *args, **kwargs: b"different")
    try:
        assert not amqp_encoding.matches_sdk()
        assert outgoing.encoded(1_000) == sdk
    finally:
        amqp_encoding.matches_sdk.cache_clear()


def test_client_needs_exactly_one_way_to_connect() -> None:
    with pytest.raises(TransportConfigError):
        servicebus_client()
    with pytest.raises(TransportConfigError):
        servicebus_client(connection="Endpoint=sb://x/", namespace="ns")


@dataclass
class FakeBatch:
    limit: int
    messages: list[Any] = field(default_factory=list)

    def add_message(self, message: Any) -> None:
        if len(self.messages) >= self.limit:
            raise ValueError("full")
        self.messages.append(message)

    def __len__(self) -> int:
        return len(self.messages)


@dataclass
class FakeSender:
    sent: list[FakeBatch] = field(default_factory=list)
    closed: bool = False

    async def create_message_batch(self) -> FakeBatch:
        return FakeBatch(limit=3)

    async def send_messages(self, batch: FakeBatch, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.sent.append(batch)

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeClient:
    senders: dict[str, FakeSender] = field(default_factory=dict)

    def get_queue_sender(self, queue: str) -> FakeSender:
        return self.senders.setdefault(queue, FakeSender())


async def test_reply_sender_packs_batches_per_queue() -> None:
    client = FakeClient()
    sender = ReplySender(client)  # type: ignore[arg-type]
    replies = [(ReplyAddress("a", "s"), _reply(f"r{i}")) for i in range(7)]
    replies.append((ReplyAddress("b", None), _reply("rb")))
    await sender.send(replies)
    assert [len(batch) for batch in client.senders["a"].sent] == [3, 3, 1]
    assert [len(batch) for batch in client.senders["b"].sent] == [1]
    await sender.close()
    assert all(s.closed for s in client.senders.values())


class _Buffer:
    def __init__(self, size: int) -> None:
        self.size = size

    def qsize(self) -> int:
        return self.size


class _RecordingReceiver:
    def __init__(self, buffered: int | None) -> None:
        if buffered is not None:
            self._handler = SimpleNamespace(_received_messages=_Buffer(buffered))
        self._further_pull_receive_timeout = 0.2
        self._amqp_transport = SimpleNamespace(TIMEOUT_FACTOR=1)
        self.calls: list[tuple[int, float]] = []

    async def receive_messages(self, *, max_message_count: int, max_wait_time: float) -> list[Any]:
        self.calls.append((max_message_count, max_wait_time))
        return []


async def test_receive_ready_takes_only_what_is_buffered() -> None:
    # Asking for no more than the buffer holds makes the SDK return at once from its buffer.
    receiver = _RecordingReceiver(buffered=3)
    await receive_ready(receiver, max_count=64, wait_s=1.0)
    assert receiver.calls == [(3, 1.0)]
    empty = _RecordingReceiver(buffered=0)
    await receive_ready(empty, max_count=64, wait_s=1.0)
    assert empty.calls == [(64, 1.0)]
    hidden = _RecordingReceiver(buffered=None)  # an SDK without the private buffer
    assert buffered_count(hidden) == 0
    await receive_ready(hidden, max_count=8, wait_s=0.5)
    assert hidden.calls == [(8, 0.5)]


def test_set_further_pull_is_guarded() -> None:
    receiver = _RecordingReceiver(buffered=0)
    assert set_further_pull(receiver, 0.001)
    assert receiver._further_pull_receive_timeout == 0.001
    assert not set_further_pull(SimpleNamespace(), 0.001)


async def test_receive_ready_against_the_bus(bus: Any, fresh_queue: str) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(5)])
        receiver = client.get_queue_receiver(fresh_queue, prefetch_count=16, socket_timeout=0.02)
        async with receiver:
            assert set_further_pull(receiver, 0.0)
            taken: list[Any] = []
            while len(taken) < 5:
                messages = await receive_ready(receiver, max_count=16, wait_s=5.0)
                assert messages, "the queue holds five messages"
                await asyncio.gather(*(receiver.complete_message(m) for m in messages))
                taken.extend(messages)
            assert sorted(str(m) for m in taken) == [f"m{i}" for i in range(5)]
            assert buffered_count(receiver) == 0


def _management_response_links(receiver: Any) -> list[Any]:
    operations = receiver._handler._mgmt_links.values()
    return [operation._mgmt_link._response_link for operation in operations]


async def test_settler_keeps_management_credit_against_the_bus(bus: Any, fresh_queue: str) -> None:
    """The SDK grants 10,000 management responses per link and never more; the settler tops
    the credit up, so request 10,001 (a worker's ~10,000th batch) still gets its answer."""
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    from qscore.transport.settlement import MessageSettler

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages(ServiceBusMessage("m"))
        receiver = client.get_queue_receiver(fresh_queue, prefetch_count=0)
        control = client.get_queue_receiver(fresh_queue, prefetch_count=0)
        async with receiver, control:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            settler = MessageSettler(receiver, control=control)
            assert await settler.renew_many([message]) == []
            (response_link,) = _management_response_links(control)
            # Where 9,998 responses would have left it: two credits to go.
            await response_link.flow(link_credit=2)

            async def renew_and_complete() -> None:
                for _ in range(5):
                    assert await settler.renew_many([message]) == []
                assert await settler.complete([message]) == []

            await asyncio.wait_for(renew_and_complete(), timeout=8)
            assert response_link.current_link_credit > 2
            assert settler.fallbacks == 0
