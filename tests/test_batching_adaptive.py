"""Adaptive micro-batching: no wait when nothing else is coming, fill only under load."""

from __future__ import annotations

import asyncio

import pytest

from qscore.batching import BatchPolicy, MicroBatcher
from qscore.batching.adaptive import AdaptiveDelay, ArrivalRate, adaptive_delay


@pytest.mark.parametrize(
    ("rate", "service", "rows_left", "expected"),
    [
        (0.0, None, 63, 0.0),  # no traffic seen: send now
        (100.0, 0.004, 63, 0.0),  # 0.2 rows expected within 2 ms: waiting buys nothing
        (10_000.0, None, 63, 0.002),  # busy, nothing known of Triton: the bound
        (10_000.0, 0.001, 63, 0.001),  # busy, a batch takes 1 ms: wait no longer than that
        (100_000.0, 0.004, 63, 0.00063),  # the batch fills in 0.63 ms at this rate
        (10_000.0, 0.004, 0, 0.0),  # nothing left to fill
    ],
)
def test_delay_rule(rate: float, service: float | None, rows_left: int, expected: float) -> None:
    delay = adaptive_delay(rate_per_s=rate, service_s=service, max_delay_s=0.002, rows_left=rows_left)
    assert delay == pytest.approx(expected)


def test_arrival_rate_counts_windows_and_decays_when_idle() -> None:
    rate = ArrivalRate(window_s=0.1, smoothing=0.5)
    rate.observe(0.0, 0)
    rate.observe(0.05, 100)  # 100 rows in the first window: 1,000 rows/s
    assert rate.current(0.1) == pytest.approx(500.0)  # half-way there with smoothing 0.5
    assert rate.current(0.4) == pytest.approx(62.5)  # three idle windows: halved each
    assert rate.current(0.41) == pytest.approx(62.5)  # inside a window: unchanged


def test_delay_follows_the_measured_rate_on_an_injected_clock() -> None:
    now = [0.0]
    delay = AdaptiveDelay(0.002, clock=lambda: now[0])
    assert delay.delay_for("m", 63) == 0.0
    for step in range(200):  # 20,000 rows/s for 0.2 s
        now[0] = step * 0.001
        delay.arrived("m", 20)
    assert delay.delay_for("m", 63) == pytest.approx(0.002)
    delay.served("m", 0.0005)
    assert delay.delay_for("m", 63) == pytest.approx(0.0005)
    now[0] += 5.0  # a long pause: the rate decays, no more waiting
    assert delay.delay_for("m", 63) == 0.0


async def test_a_lone_request_does_not_wait_for_the_bound() -> None:
    handled: list[list[int]] = []

    async def record(key: str, items: list[int]) -> None:
        handled.append(items)

    # A 60 s bound: without adaptation the lone item would sit for a minute.
    policy = BatchPolicy(max_delay_s=60, adaptive=True)
    batcher: MicroBatcher[str, int] = MicroBatcher(handler=record, policy=policy)
    for item in (1, 2, 3):  # one receive's worth, added in one turn of the loop: one batch
        batcher.add("m", item, model_max_batch_size=64)
    await asyncio.wait_for(batcher.drain(), timeout=5)
    assert handled == [[1, 2, 3]]
    batcher.add("m", 4, model_max_batch_size=64)
    for _ in range(5):
        await asyncio.sleep(0)
    assert handled == [[1, 2, 3], [4]]  # sent on the next loop turns, not after 60 s
