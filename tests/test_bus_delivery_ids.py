"""Transfers a client numbered out of order (qscore_local/bus/delivery_ids.py): the endpoint takes
them as Service Bus does instead of closing the connection with proton's "sequencing error"."""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import ThreadPoolExecutor

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from proton import Collector, Connection, Transport

from qscore_local.bus.delivery_ids import DeliveryIdRenumberer
from qscore_local.bus.launcher import BusEndpoint

HEADER = b"AMQP\x00\x01\x00\x00"


def _frame(channel: int, performative: int, fields: bytes, count: int, payload: bytes = b"") -> bytes:
    body = b"\x00\x53" + bytes([performative]) + bytes([0xC0, len(fields) + 1, count]) + fields + payload
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def _transfer(delivery_id: int, *, handle: int = 0, more: bool = False, payload: bytes = b"x") -> bytes:
    # handle, delivery-id (uint, 4 bytes when > 255 so widths differ), tag, format, settled, more
    id_bytes = bytes([0x52, delivery_id]) if delivery_id < 256 else b"\x70" + struct.pack(">I", delivery_id)
    fields = (
        bytes([0x52, handle]) + id_bytes + b"\xa0\x01t" + b"\x43" + b"\x42" + (b"\x41" if more else b"\x42")
    )
    return _frame(0, 0x14, fields, 6, b"\x00\x53\x77\xa1\x01" + payload)


def _delivery_ids(stream: bytes) -> list[int]:
    ids, at = [], 0
    while at < len(stream):
        if stream[at : at + 4] == b"AMQP":
            at += 8
            continue
        size = struct.unpack_from(">I", stream, at)[0]
        frame = stream[at : at + size]
        if frame[10] == 0x14:  # transfer: list8 header at 11..13, handle 14..15, delivery-id from 16
            code = frame[16]
            ids.append(frame[17] if code == 0x52 else struct.unpack_from(">I", frame, 17)[0])
        at += size
    return ids


def test_in_order_transfers_pass_through_byte_for_byte() -> None:
    stream = HEADER + _transfer(5) + _transfer(6) + _transfer(7)
    renumberer = DeliveryIdRenumberer()
    assert renumberer.feed(stream) == stream
    assert renumberer.renumbered == 0


def test_duplicate_and_skipped_ids_become_the_sequence_proton_expects() -> None:
    # Two threads read next_outgoing_id before either increments it: 2, 2, then 4.
    renumberer = DeliveryIdRenumberer()
    out = renumberer.feed(HEADER + _transfer(1) + _transfer(2) + _transfer(2) + _transfer(4) + _transfer(300))
    assert _delivery_ids(out) == [1, 2, 3, 4, 5]
    assert renumberer.renumbered == 2


def test_frames_split_across_reads_and_multi_frame_deliveries_keep_their_id() -> None:
    stream = HEADER + _transfer(0) + _transfer(0, more=True) + _transfer(0) + _transfer(9)
    renumberer = DeliveryIdRenumberer()
    out = b"".join(renumberer.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert _delivery_ids(out) == [0, 1, 1, 2]  # the continuation frame follows its first frame's id


def test_a_frame_size_proton_would_refuse_is_not_held_back() -> None:
    renumberer = DeliveryIdRenumberer()
    oversized = HEADER + struct.pack(">IBBH", 1 << 30, 2, 0, 0) + b"partial"
    assert renumberer.feed(oversized) == oversized
    assert renumberer.feed(_transfer(7)) == _transfer(7)  # from then on the stream passes as is


def test_proton_accepts_the_renumbered_stream() -> None:
    # proton's engine as the endpoint runs it, fed a client's frames: a duplicate delivery-id as
    # sent is the "sequencing error" that closes the connection; renumbered, it is a delivery.
    def transport_error(stream: bytes, *, renumber: bool) -> str | None:
        transport = Transport(Transport.SERVER)
        connection = Connection()
        connection.collect(Collector())
        transport.bind(connection)
        renumberer = DeliveryIdRenumberer()
        transport.push(renumberer.feed(setup) if renumber else setup)
        connection.open()  # the local ends, so that proton opens its incoming session window
        connection.session_head(0).open()
        connection.link_head(0).open()
        transport.pending()
        transport.push(renumberer.feed(stream) if renumber else stream)
        return transport.condition.description if transport.condition else None

    fields_open = b"\xa1\x01c"  # container-id
    begin = b"\x40" + b"\x43" + b"\x70\x00\x00\x10\x00" + b"\x70\x00\x00\x10\x00"
    attach = b"\xa1\x01l" + b"\x43" + b"\x42"  # name, handle 0, role sender
    setup = HEADER + _frame(0, 0x10, fields_open, 1) + _frame(0, 0x11, begin, 4) + _frame(0, 0x12, attach, 3)
    raced = _transfer(0) + _transfer(0) + _transfer(2)
    assert "sequencing error" in (transport_error(raced, renumber=False) or "")
    assert transport_error(raced, renumber=True) is None


def _renew_from_threads(connection_string: str, queue: str) -> int:
    with ServiceBusClient.from_connection_string(connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"r{i}") for i in range(12)])
        with client.get_queue_receiver(queue, prefetch_count=12) as receiver:
            messages = receiver.receive_messages(max_message_count=12, max_wait_time=5)
            with ThreadPoolExecutor(8) as pool:  # what AutoLockRenewer(max_workers=8) does
                for _ in range(3):
                    list(pool.map(receiver.renew_message_lock, messages))
            for message in messages:
                receiver.complete_message(message)
            return len(messages)


async def test_sync_receiver_shared_by_threads_keeps_its_connection(
    bus: BusEndpoint, fresh_queue: str
) -> None:
    assert await asyncio.to_thread(_renew_from_threads, bus.connection_string, fresh_queue) == 12
