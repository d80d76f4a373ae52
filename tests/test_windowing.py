"""Broker requests windowed by rate x round trip (qscore.transport.windowing, workers/windows.py).

Fakes for speed and determinism; the real links run in tests/test_transport.py and
tests/test_sdk_hooks.py (settlement on the pool's first control receiver, against the bus) and in
every worker test (the worker settles and replies through these pools)."""

from __future__ import annotations

import asyncio

import pytest

from qscore.transport.windowing import InFlightWindow, LinkPool
from workers.windows import MAX_FACTOR, BatchSlots


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLink:
    def __init__(self) -> None:
        self.closed = False
        self.busy = False

    async def close(self) -> None:
        self.closed = True


def test_window_is_rate_times_round_trip_plus_headroom() -> None:
    clock = FakeClock()
    window = InFlightWindow(ceiling=16, clock=clock)
    window.answered(0.05)  # 50 ms round trip
    for _ in range(10):  # 100 requests/s for 2.5 s, never more than one wanting at once
        for _ in range(25):
            clock.now += 0.01
            window.asked(1)
    assert window.rate == pytest.approx(100, rel=0.05)
    assert window.size == 6  # ceil(100 x 0.05) + 1


def test_window_grows_while_requests_wait_and_stops_at_its_ceiling() -> None:
    clock = FakeClock()
    window = InFlightWindow(ceiling=8, clock=clock)
    window.answered(0.05)
    sizes = []
    for _ in range(5):
        clock.now += 0.3
        window.asked(100)  # many waiting: slow start doubles
        sizes.append(window.size)
    assert sizes == [2, 4, 8, 8, 8]


def test_window_keeps_its_size_while_nothing_is_measured() -> None:
    clock = FakeClock()
    window = InFlightWindow(ceiling=8, clock=clock)
    clock.now += 1
    window.asked(5)  # no round trip measured yet: nothing to size from
    assert window.size == 1


async def test_pool_runs_requests_on_separate_links_up_to_the_window() -> None:
    opened: list[FakeLink] = []

    def open_link() -> FakeLink:
        opened.append(FakeLink())
        return opened[-1]

    first = FakeLink()
    pool: LinkPool[FakeLink] = LinkPool(open_link, ceiling=4, first=first)
    pool.window.size = 3
    most_at_once = 0
    gate = asyncio.Event()

    async def request() -> None:
        nonlocal most_at_once
        async with pool.use() as link:
            assert not link.busy, "two requests on one link at once"
            link.busy = True
            most_at_once = max(most_at_once, pool.in_flight)
            await gate.wait()
            link.busy = False

    tasks = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert pool.in_flight == 3 and len(pool.links) == 3  # the rest wait for a free link
    gate.set()
    await asyncio.gather(*tasks)
    assert most_at_once == 3 and len(opened) == 2 and pool.in_flight == 0
    await pool.close()
    assert first.closed and all(link.closed for link in opened)


async def test_pool_without_an_opener_uses_its_one_link_in_turn() -> None:
    link = FakeLink()
    pool: LinkPool[FakeLink] = LinkPool(None, ceiling=8, first=link)
    order: list[int] = []

    async def request(number: int) -> None:
        async with pool.use() as used:
            assert used is link and not used.busy
            used.busy = True
            await asyncio.sleep(0)
            order.append(number)
            used.busy = False

    await asyncio.gather(*(request(n) for n in range(4)))
    assert sorted(order) == [0, 1, 2, 3] and pool.window.ceiling == 1


async def test_a_link_busy_at_close_is_closed_when_its_request_ends() -> None:
    link = FakeLink()
    pool: LinkPool[FakeLink] = LinkPool(None, ceiling=1, first=link)
    async with pool.use():
        await pool.close()
        assert not link.closed
    assert link.closed
    with pytest.raises(RuntimeError):
        async with pool.use():
            pass


async def test_pool_attaches_links_ahead_of_need_and_never_makes_a_request_wait_for_one() -> None:
    attached: list[FakeLink] = []
    attach_may_end = asyncio.Event()

    async def attach(link: FakeLink) -> None:
        await attach_may_end.wait()
        attached.append(link)

    first = FakeLink()
    pool: LinkPool[FakeLink] = LinkPool(FakeLink, ceiling=4, first=first, attach=attach)
    pool.window.size = 2
    held = pool.use()
    assert await held.__aenter__() is first
    await asyncio.sleep(0)
    assert len(pool.links) == 2 and attached == []  # every link busy: the next one attaches now

    second_use = pool.use()
    second = asyncio.create_task(second_use.__aenter__())
    await asyncio.sleep(0.01)
    assert not second.done()  # its link still attaching
    await held.__aexit__(None, None, None)
    assert await second is first  # the link set free first carries it, not the attaching one
    attach_may_end.set()
    await asyncio.sleep(0.01)
    assert attached == [pool.links[1]] and pool.in_flight == 1
    await pool.close()
    assert not first.closed and pool.links[1].closed  # `first` still carries `second`'s request
    await second_use.__aexit__(None, None, None)
    assert first.closed


async def test_links_attaching_at_close_are_closed() -> None:
    never = asyncio.Event()

    async def attach(link: FakeLink) -> None:
        await never.wait()

    pool: LinkPool[FakeLink] = LinkPool(FakeLink, ceiling=4, attach=attach)
    use = pool.use()
    waiting = asyncio.create_task(use.__aenter__())
    await asyncio.sleep(0.01)
    assert len(pool.links) == 1 and not waiting.done()
    await pool.close()
    await asyncio.sleep(0.01)
    assert pool.links[0].closed
    with pytest.raises(RuntimeError):
        await waiting


def test_batch_slots_add_the_batches_waiting_on_the_broker() -> None:
    clock = FakeClock()
    slots = BatchSlots(4, clock=clock)
    started = 0
    for _ in range(4):  # 100 batches/s, 60 ms of replies + settlement each
        clock.now += 0.5
        started += 50
        limit = slots.tick(started, broker_wait_s=0.06)
    assert limit == 4 + 6
    clock.now += 0.5
    assert slots.tick(started, broker_wait_s=0.06) == limit  # idle: kept
    for _ in range(10):  # at loopback the bound falls back to the setting
        clock.now += 0.5
        started += 50
        limit = slots.tick(started, broker_wait_s=0.0001)
    assert limit == 5
    for _ in range(10):
        clock.now += 0.5
        started += 5000
        limit = slots.tick(started, broker_wait_s=0.5)
    assert limit == 4 * MAX_FACTOR


def test_batch_slots_go_straight_to_the_setting_scoring_when_batches_wait_on_the_broker() -> None:
    clock = FakeClock()
    slots = BatchSlots(4, clock=clock)
    # 4 slots full, 20 batches/s: each holds its slot 0.2 s, 0.15 s of it on the broker (f = 0.75),
    # so one batch is scoring; 4 scoring needs 4 / (1 - 0.75) = 16 slots, at once.
    slots.tick(0, broker_wait_s=0.15, in_flight=4)
    clock.now += 0.5
    assert slots.tick(10, broker_wait_s=0.15, in_flight=4) == 16
    # Triton binds: 0.5 s a batch in its slot, 0.01 s of it on the broker: the setting is enough.
    triton_bound = BatchSlots(4, clock=clock)
    triton_bound.tick(0, broker_wait_s=0.01, in_flight=4)
    clock.now += 0.5
    assert triton_bound.tick(4, broker_wait_s=0.01, in_flight=4) == 5  # 4 + ceil(8 x 0.01)
    # Everything on the broker (f >= 1): the most the bound allows.
    on_broker = BatchSlots(4, clock=clock)
    on_broker.tick(0, broker_wait_s=0.5, in_flight=4)
    clock.now += 0.5
    assert on_broker.tick(10, broker_wait_s=0.5, in_flight=4) == 4 * MAX_FACTOR


def test_batch_slots_take_their_first_sample_early() -> None:
    clock = FakeClock()
    slots = BatchSlots(4, clock=clock)
    slots.tick(0, broker_wait_s=0.15, in_flight=4)
    clock.now += 0.05
    assert slots.tick(2, broker_wait_s=0.15, in_flight=4) == 4  # too soon, too few batches
    clock.now += 0.06
    # 0.11 s in, the setting's worth started (36 batches/s, 0.15 s of each on the broker: f > 1)
    assert slots.tick(4, broker_wait_s=0.15, in_flight=4) == 4 * MAX_FACTOR
    clock.now += 0.1
    assert slots.tick(8, broker_wait_s=0.01, in_flight=4) == 4 * MAX_FACTOR  # then every SAMPLE_S
