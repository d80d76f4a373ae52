"""Priority lanes (issue 16): the weighted turns, the lanes from settings, and one worker
receiving from two lanes of the real local bus, scored by the real Triton."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer
from tests.fixtures.bus import _fresh_names
from tests.fixtures.worker import WorkerSettingsFactory, running_worker
from workers.lanes import WeightedTurns
from workers.settings import WorkerSettings


async def _take_turns(turns: WeightedTurns, lane: str, order: list[str], count: int) -> None:
    for _ in range(count):
        async with turns.turn(lane):
            order.append(lane)
            await asyncio.sleep(0)


async def _waiting_at_once(turns: WeightedTurns, lane: str, order: list[str], count: int) -> None:
    """`count` receive batches of one lane, all waiting for their turn (a busy lane)."""
    await asyncio.gather(*(_take_turns(turns, lane, order, 1) for _ in range(count)))


async def test_busy_lanes_share_turns_by_weight_and_a_lone_lane_gets_every_turn() -> None:
    turns = WeightedTurns({"high": 4, "low": 1})
    order: list[str] = []
    await asyncio.gather(
        _waiting_at_once(turns, "high", order, 40), _waiting_at_once(turns, "low", order, 40)
    )
    while_both = order[:50]
    assert while_both.count("high") == 40 and while_both.count("low") == 10  # 4:1, low never starved
    assert order[50:] == ["low"] * 30  # the high lane is done: the low one takes every turn


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    turns = WeightedTurns({"high": 4, "low": 1})
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn("low"):
            entered.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await entered.wait()
    waiter = asyncio.create_task(_take_turns(turns, "high", [], 1))
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await holder
    order: list[str] = []
    await asyncio.wait_for(_take_turns(turns, "low", order, 2), 1)
    assert order == ["low", "low"]


def test_lanes_from_settings_highest_first() -> None:
    settings = WorkerSettings(servicebus_connection="x", priority_queues="urgent, high")
    assert settings.lanes() == {"urgent": 16, "high": 4, "scoring-requests": 1}
    assert WorkerSettings(servicebus_connection="x").lanes() == {"scoring-requests": 1}
    with pytest.raises(ValueError):
        WeightedTurns({"a": 0})


async def test_one_worker_answers_both_lanes(bus: Any, worker_settings: WorkerSettingsFactory) -> None:
    low, high = (f"test-fresh-{next(_fresh_names)}" for _ in range(2))
    producer_settings = ProducerSettings(
        connection=bus.connection_string, request_queue=low, high_priority_queue=high, reply_timeout_s=30
    )
    rng = np.random.default_rng(5)

    def requests(count: int, priority: int) -> list[OutgoingRequest]:
        pixels = rng.uniform(0, 16, (count, 64)).astype(np.float32)
        return [OutgoingRequest.build("digits", {"pixels": row[None]}, priority=priority) for row in pixels]

    lows, highs = requests(60, 0), requests(12, 9)
    settings = worker_settings(request_queue=low, priority_queues=high)
    async with ScoringProducer(settings=producer_settings) as producer:
        await producer.send(lows + highs)  # all waiting before the worker starts
        async with running_worker(settings):
            outcomes = [outcome async for outcome in producer.replies()]
    assert len(outcomes) == 72 and all(outcome.ok for outcome in outcomes)
