"""Emulated network latency on the local endpoint (`--latency-ms`, qscore_local/bus/latency.py).

The delay must keep frame order and be a line, not a gate: a frame sent at t arrives at t + D
however many are in flight. The delay lines are checked on a given clock (exact), and through a
real endpoint on the wire (order, and N frames in far less than N x D) and with the real SDK
over plain AMQP and WebSockets (a send's acknowledgement takes at least a round trip). Only
lower bounds and a bound many delays wide are asserted on time: they hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage, TransportType
from azure.servicebus.aio import ServiceBusClient
from proton import Collector, Connection, Endpoint, Transport

from qscore_local.bus.config import QueueConfig
from qscore_local.bus.latency import DelayLine, NetworkLatency
from qscore_local.bus.launcher import LocalBus
from tests.fixtures.ports import free_port

DELAY_MS = 50
DELAY_S = DELAY_MS / 1000
QUEUE = "latency-queue"


# ---- the delay line on a given clock ------------------------------------------------------------
def test_delay_line_releases_each_chunk_its_delay_after_it_entered_in_order() -> None:
    line = DelayLine(NetworkLatency(one_way_s=0.05))
    for index in range(200):  # 200 chunks entering 1 ms apart: a pipeline, not a queue of waits
        line.put(bytes([index]), now=index / 1000)
    assert line.take_due(0.0499) == (b"", False)
    assert line.next_due() == pytest.approx(0.05)
    assert line.take_due(0.05) == (bytes([0]), False)
    assert line.take_due(0.05 + 0.0995) == (bytes(range(1, 100)), False)
    assert line.take_due(0.249) == (bytes(range(100, 200)), False)
    assert not line


def test_jitter_delays_but_never_reorders_and_end_of_stream_comes_last() -> None:
    line = DelayLine(NetworkLatency(one_way_s=0.01, jitter_s=0.05), rng=random.Random(7))
    for index in range(500):  # jitter (50 ms) far wider than the gaps (0.1 ms): reordering would show
        line.put(index.to_bytes(2, "big"), now=index / 10_000)
    line.put(None, now=0.05)
    released, ended, now = b"", False, 0.0
    while not ended:
        now += 0.001
        data, ended = line.take_due(now)
        released += data
    order = [int.from_bytes(released[i : i + 2], "big") for i in range(0, len(released), 2)]
    assert order == list(range(500))


def test_unsent_bytes_go_out_first_and_zero_latency_is_off() -> None:
    line = DelayLine(NetworkLatency(one_way_s=0.01))
    line.put(b"abc", now=0.0)
    line.put(b"def", now=0.001)
    data, _ = line.take_due(0.02)
    line.return_unsent(data[4:])
    line.put(b"ghi", now=0.02)
    assert line.take_due(0.021) == (b"ef", False)
    assert line.take_due(0.03) == (b"ghi", False)
    assert not NetworkLatency.resolve(None, None, env={}).enabled
    assert NetworkLatency.resolve(None, None, env={"QSCORE_BUS_LATENCY_MS": "5"}).one_way_s == 0.005
    assert NetworkLatency.resolve(25, None, env={"QSCORE_BUS_LATENCY_MS": "5"}).one_way_s == 0.025
    with pytest.raises(ValueError):
        NetworkLatency.from_ms(0, 3)  # jitter with no latency to vary around


# ---- through a real endpoint ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def delayed_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBus]:
    folder: Path = tmp_path_factory.mktemp("latency-bus")
    local_bus = LocalBus(
        port=free_port(), queues=[QueueConfig(name=QUEUE)], log_path=folder / "bus.log", latency_ms=DELAY_MS
    )
    local_bus.start()
    yield local_bus
    local_bus.close()


class _WireClient:
    """A proton engine on a blocking socket: what goes out is exactly what the test opened."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(0.01)
        self.collector = Collector()
        self.connection = Connection()
        self.connection.collect(self.collector)
        self.transport = Transport()
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.connection)
        self.opened: list[str] = []

    def flush(self) -> None:
        while (pending := self.transport.pending()) > 0:
            self.transport.pop(self.sock.send(self.transport.peek(pending) or b""))

    def pump(self) -> None:
        self.flush()
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            data = None
        while data:
            room = self.transport.capacity()
            self.transport.push(data[:room])
            data = data[room:]
        while (event := self.collector.peek()) is not None:
            if event.type == event.LINK_REMOTE_OPEN and event.link is not None:
                self.opened.append(event.link.name)
            self.collector.pop()

    def wait(self, done: Callable[[], object], deadline_s: float = 30) -> None:
        give_up = time.monotonic() + deadline_s
        while not done():
            assert time.monotonic() < give_up, "the endpoint stopped answering"
            self.pump()


def test_frames_through_the_delay_keep_order_and_are_pipelined(delayed_bus: LocalBus) -> None:
    assert delayed_bus.endpoint is not None
    client = _WireClient(delayed_bus.endpoint.port)
    try:
        client.connection.open()
        session = client.connection.session()
        session.open()
        client.wait(lambda: session.state & Endpoint.REMOTE_ACTIVE)
        count = 200
        started = time.monotonic()
        for index in range(count):  # one attach frame per write: 200 frames in flight at once
            link = session.sender(f"link-{index:03d}")
            link.target.address = QUEUE
            link.open()
            client.flush()
        client.wait(lambda: len(client.opened) == count)
        elapsed = time.monotonic() - started
    finally:
        client.sock.close()
    assert client.opened == [f"link-{index:03d}" for index in range(count)]
    assert elapsed >= 2 * DELAY_S  # each attach went there and its answer came back
    # One frame at a time would take count x 2 x D (20 s); pipelined it is about 2 x D.
    assert elapsed < 10 * DELAY_S, f"{count} attaches took {elapsed:.3f}s at {DELAY_MS} ms one way"


@pytest.mark.parametrize("transport_type", [TransportType.Amqp, TransportType.AmqpOverWebsocket])
async def test_sdk_send_and_receive_through_the_delay(
    delayed_bus: LocalBus, transport_type: TransportType
) -> None:
    endpoint = delayed_bus.endpoint
    assert endpoint is not None
    options: dict[str, object] = {"transport_type": transport_type}
    if transport_type is TransportType.AmqpOverWebsocket:
        options["custom_endpoint_address"] = f"sb://127.0.0.1:{endpoint.port}"
    async with ServiceBusClient.from_connection_string(endpoint.connection_string, **options) as client:  # type: ignore[arg-type]
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage("warm"))  # links up before the timed send
            started = time.monotonic()
            await sender.send_messages(ServiceBusMessage(f"timed {transport_type.name}"))
            send_round_trip = time.monotonic() - started
        async with client.get_queue_receiver(QUEUE, prefetch_count=10) as receiver:
            received: list[str] = []
            while len(received) < 2:
                batch = await receiver.receive_messages(max_message_count=10, max_wait_time=5)
                assert batch, "nothing came through the delayed endpoint"
                await asyncio.gather(*(receiver.complete_message(message) for message in batch))
                received += [str(message) for message in batch]
    assert received == ["warm", f"timed {transport_type.name}"]
    assert send_round_trip >= 2 * DELAY_S  # the transfer there, its acknowledgement back
