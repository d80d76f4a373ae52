"""qscore.transport.frame_reads: on the local bus, frames already in the receiving connection's
buffer are read without asyncio.wait_for's timeout and every message still arrives; a transport
without the fields it reads keeps the SDK's reads, counted once per connection."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from qscore.transport import frame_reads, sdk_hooks
from qscore.transport.receiving import receive_ready


async def test_buffered_frames_are_read_without_a_timeout_on_the_bus(bus: Any, fresh_queue: str) -> None:
    count = 60
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(count)])
        async with client.get_queue_receiver(fresh_queue, prefetch_count=count) as receiver:
            before_reads = dict(frame_reads.reads)
            before_fallbacks = sdk_hooks.fallback_counts()
            bodies: list[str] = []
            for _ in range(50):
                messages = await receive_ready(receiver, max_count=count, wait_s=1)
                bodies += [b"".join(message.body).decode() for message in messages]
                await asyncio.gather(*(receiver.complete_message(message) for message in messages))
                if len(bodies) >= count:
                    break
            transport = receiver._handler._connection._transport
            assert transport._qscore_fast_frames is True
            assert frame_reads.fast_frames(receiver)  # once per transport: already wrapped
            assert sorted(bodies) == sorted(f"m{i}" for i in range(count))  # each once, none lost
            assert frame_reads.reads["buffered"] > before_reads.get("buffered", 0)
            assert sdk_hooks.fallback_counts() == before_fallbacks


class _Transport:
    """A pyamqp transport's shape: `reader` (a StreamReader), `_read_buffer`, `socket_lock`."""

    def __init__(self, data: bytes) -> None:
        self.reader = asyncio.StreamReader()
        self.reader.feed_data(data)
        self._read_buffer = io.BytesIO()
        self.socket_lock = asyncio.Lock()


def _frame(payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + b"\x02\x00\x00\x00" + payload


async def test_a_frame_waits_unless_it_is_all_here_and_nothing_is_in_the_way() -> None:
    assert frame_reads.frame_waiting(_Transport(_frame(b"abc")))
    assert not frame_reads.frame_waiting(_Transport(_frame(b"abc")[:-1]))  # its end not here yet
    assert not frame_reads.frame_waiting(_Transport(b"AMQP\x00\x01\x00\x00"))  # the protocol header
    assert not frame_reads.frame_waiting(_Transport(b""))
    leftover = _Transport(_frame(b"abc"))
    leftover._read_buffer = io.BytesIO(b"\x00\x00")  # an interrupted read's bytes come first
    assert not frame_reads.frame_waiting(leftover)
    assert leftover._read_buffer.tell() == 0  # and stay where they were
    busy = _Transport(_frame(b"abc"))
    await busy.socket_lock.acquire()  # a read in progress
    assert not frame_reads.frame_waiting(busy)


def test_a_transport_without_the_fields_keeps_the_sdks_reads_counted_once() -> None:
    class WebSocketLike:
        async def receive_frame(self, timeout: float | None = None, **kwargs: Any) -> Any:  # noqa: ASYNC109
            return None, None

    class Receiver:
        def __init__(self, transport: object) -> None:
            self._handler = type("H", (), {"_connection": type("C", (), {"_transport": transport})()})()

    receiver = Receiver(WebSocketLike())
    before = sdk_hooks.fallback_counts().get("transport.reader", 0)
    assert not frame_reads.fast_frames(receiver)
    assert not frame_reads.fast_frames(receiver)
    assert sdk_hooks.fallback_counts().get("transport.reader", 0) == before + 1
    assert frame_reads.fast_frames(Receiver(None)) is False  # not open yet: nothing counted
    assert sdk_hooks.fallback_counts().get("transport.reader", 0) == before + 1


async def test_a_reader_of_buffered_frames_gives_other_tasks_turns() -> None:
    """Buffered reads do not yield, so a busy lane's receiver would read a whole receive's frames
    while the other lane's receiver waited: every YIELD_EVERY reads the loop gets a turn."""
    frames = 32  # four times YIELD_EVERY
    transport = _Transport(b"".join(_frame(b"m%d" % i) for i in range(frames)))

    async def sdk_receive_frame(timeout: float | None = None, **kwargs: Any) -> Any:  # noqa: ASYNC109
        header = await transport.reader.readexactly(8)
        return await transport.reader.readexactly(int.from_bytes(header[:4], "big") - 8)

    receive = frame_reads._wrapped(transport, sdk_receive_frame)
    turns = 0

    async def other_lane() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_lane())
    await asyncio.sleep(0)
    started = turns
    payloads = [await receive(timeout=1.0) for _ in range(frames)]
    other.cancel()
    assert payloads == [b"m%d" % i for i in range(frames)]  # in order, none lost
    assert turns - started >= 3  # 4 yields in 32 reads (none before: the old reader never yielded)
