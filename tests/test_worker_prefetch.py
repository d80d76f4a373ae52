"""Prefetch sized from measured throughput, and lock renewal in batches.

The regression: a slow model behind a prefetch buffer larger than what the worker scores within
a lock duration. Buffered messages are locked at the broker but the worker cannot renew them, so
their locks lapsed, the broker redelivered them, and the worker scored them twice (duplicate
replies, lock-lost completions). The window now shrinks to the measured rate x a fraction of
the lock, so every message the worker has locked is either renewed or taken in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ReplyStatus
from qscore.inference import TritonClient
from qscore.transport.settlement import MessageSettler
from qscore_local.bus.stats import queue_counts
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    SlowBackend,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)
from workers import prefetch
from workers.locks import HeldMessages, renew_entries
from workers.prefetch import PrefetchWindow, apply_link_credit

SHORT_LOCK_QUEUE = "test-short-lock"  # lock 2 s, max delivery 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(prefetch.time, "monotonic", fake)
    return fake


def _run(window: PrefetchWindow, clock: FakeClock, *, rate: float, seconds: float) -> int:
    """Feed `rate` finished messages per second while busy, ticking every 0.1 s."""
    for _ in range(round(seconds / 0.1)):
        clock.now += 0.1
        window.finished(round(rate * 0.1))
        window.tick(held=5)
    return window.size


def test_window_starts_at_one_and_grows_with_throughput(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    window.lock_s = 30.0
    assert window.tick(held=0) == 1
    assert _run(window, clock, rate=1000, seconds=3) == pytest.approx(100, abs=15)  # 0.1 s of work
    assert _run(window, clock, rate=20000, seconds=3) == 512  # capped by the prefetch setting


def test_lock_rule_beats_the_floor_for_a_slow_model(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    window.lock_s = 2.0
    assert _run(window, clock, rate=10, seconds=3) == 5  # 10 msg/s x 2 s x 0.25


def test_idle_time_does_not_shrink_the_window(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    size = _run(window, clock, rate=1000, seconds=3)
    for _ in range(50):  # 5 s with nothing held
        clock.now += 0.1
        window.tick(held=0)
    assert window.size == size


def test_no_prefetch_keeps_a_zero_window(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=0)
    assert _run(window, clock, rate=100, seconds=2) == 0


def test_link_credit_follows_the_window() -> None:
    receiver = SimpleNamespace(_prefetch_count=1, _handler=SimpleNamespace(_link_credit=2))
    assert apply_link_credit(receiver, 64)
    assert receiver._prefetch_count == 64 and receiver._handler._link_credit == 65
    no_prefetch = SimpleNamespace(_prefetch_count=0, _handler=SimpleNamespace(_link_credit=1))
    assert not apply_link_credit(no_prefetch, 64) and no_prefetch._handler._link_credit == 1


class FakeRenewer:
    """Renews all but `lost`, moving each renewed message's lock 30 s on."""

    def __init__(self, lost: set[int]) -> None:
        self.lost = lost
        self.requests: list[int] = []

    async def renew_many(self, messages: Sequence[Any]) -> list[Any]:
        self.requests.append(len(messages))
        for message in messages:
            message.locked_until_utc = datetime.now(UTC) + timedelta(seconds=30)
        return [message for message in messages if id(message) in self.lost]


async def test_due_locks_renew_in_one_request_and_failures_retry_soon() -> None:
    now = datetime.now(UTC)
    messages = [SimpleNamespace(locked_until_utc=now + timedelta(seconds=1)) for _ in range(3)]
    held = HeldMessages(limit=10)
    held.add(messages)
    await asyncio.sleep(0.6)  # half of the 1 s lock has passed
    due = held.due_for_renewal()
    assert len(due) == 3
    renewer = FakeRenewer(lost={id(messages[0])})
    await renew_entries(renewer, due, held.default_lock_s)
    assert renewer.requests == [3]
    renew_in = {id(entry.message): entry.renew_at for entry in due}
    assert renew_in[id(messages[0])] < renew_in[id(messages[1])] - 10  # lost: retried in ~1 s


async def test_message_settler_renews_many_locks_against_the_bus(bus: Any, fresh_queue: str) -> None:
    from azure.servicebus.aio import ServiceBusClient

    await send_requests(
        bus.connection_string, fresh_queue, [OutgoingRequest(f"r-{i}", "{}") for i in range(3)]
    )
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        receiver = client.get_queue_receiver(fresh_queue)
        control = client.get_queue_receiver(fresh_queue)
        async with receiver, control:
            messages = await receiver.receive_messages(max_message_count=3, max_wait_time=5)
            assert len(messages) == 3
            before = [message.locked_until_utc for message in messages]
            await asyncio.sleep(0.3)
            settler = MessageSettler(receiver, control=control)
            assert await settler.renew_many(messages) == []
            assert all(m.locked_until_utc > b for m, b in zip(messages, before, strict=True))
            assert await settler.complete(messages) == []
            # Settled: each one's renewal now fails and is reported lost.
            assert len(await settler.renew_many(messages)) == 3


async def test_slow_model_with_a_large_prefetch_scores_each_request_once(
    bus: Any, replies: ReplyCollector, triton: Any, worker_settings: WorkerSettingsFactory
) -> None:
    # 4 msg/s against a 2 s lock: a 64-message prefetch buffer would hold ~4 s of work.
    count = 16
    rng = np.random.default_rng(2)
    requests = [
        OutgoingRequest(f"pf-{i}", digits_request(rng.uniform(0, 16, (1, 64))), session_id=replies.session_id)
        for i in range(count)
    ]
    await send_requests(bus.connection_string, SHORT_LOCK_QUEUE, requests)
    client = TritonClient(triton.grpc_url)
    backend = SlowBackend(client, delay_s=0.25)
    settings = worker_settings(
        request_queue=SHORT_LOCK_QUEUE,
        prefetch=64,
        max_held_messages=2,
        max_batch_size=1,
        max_in_flight_batches=1,
        max_batch_delay_ms=0,
    )
    try:
        async with running_worker(settings, backend=backend):
            await replies.collect(count, timeout_s=30, settle_s=2.5)  # a lapsed lock redelivers in 2 s
    finally:
        await client.close()
    assert {key: len(value) for key, value in replies.replies.items()} == {f"pf-{i}": 1 for i in range(count)}
    assert all(reply[0].status == ReplyStatus.OK for reply in replies.replies.values())
    assert backend.calls == count  # nothing scored twice
    counts = (await queue_counts(bus.connection_string))[SHORT_LOCK_QUEUE]
    assert (counts.active, counts.locked) == (0, 0)


def test_a_window_taken_whole_doubles_between_samples(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    window.received(1, buffered=0, room=1000)
    window.received(2, buffered=0, room=1000)
    assert window.size == 4
    window.received(4, buffered=1, room=1000)  # some left in the buffer: the worker set the pace
    window.received(3, buffered=0, room=1000)  # less than the window came
    window.received(4, buffered=0, room=5)  # no room in the held set for as much again
    assert window.size == 4
    for _ in range(5):
        window.received(window.size, buffered=0, room=1000)
    assert window.size == 16  # the floor, until the rate is measured


def test_doubling_stops_at_the_lock_rule(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    window.lock_s = 2.0
    _run(window, clock, rate=10, seconds=3)
    for _ in range(5):
        window.received(window.size, buffered=0, room=1000)
    assert window.size == 5  # 10 msg/s x 2 s x 0.25, as the sampled window


class FakeLink:
    def __init__(self, credit: int) -> None:
        self.current_link_credit = credit
        self.flows: list[int] = []

    async def flow(self, *, link_credit: int) -> None:
        self.flows.append(link_credit)
        self.current_link_credit = link_credit


def _receiver(credit: int, buffered: int) -> Any:
    from queue import Queue

    messages: Queue[int] = Queue()
    for index in range(buffered):
        messages.put(index)
    return SimpleNamespace(_handler=SimpleNamespace(_link=FakeLink(credit), _received_messages=messages))


async def test_link_credit_is_topped_up_once_half_the_window_is_used() -> None:
    from qscore.transport.receiving import top_up_link_credit

    receiver = _receiver(credit=60, buffered=0)
    assert not await top_up_link_credit(receiver, 100)  # more than half still coming
    receiver = _receiver(credit=30, buffered=10)
    assert await top_up_link_credit(receiver, 100)
    assert receiver._handler._link.flows == [90]  # buffered + credit = the window, never more
    receiver = _receiver(credit=0, buffered=100)
    assert not await top_up_link_credit(receiver, 100)  # the buffer holds the window already


def test_the_first_rate_is_taken_early_and_then_replaced(clock: FakeClock) -> None:
    window = PrefetchWindow(ceiling=512)
    window.tick(held=5)
    clock.now += 0.15  # 0.15 s busy, 50 finished: past the floor, well before a whole sample
    window.finished(50)
    window.tick(held=5)
    assert window.rate == pytest.approx(333.3, abs=0.1) and window.size == 33  # x 0.1 s ahead
    _run(window, clock, rate=200, seconds=0.4)  # the next sample (on the grid) replaces it
    assert window.rate == pytest.approx(200)
