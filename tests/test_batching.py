"""Unit tests for the micro-batcher (no servers; timings are generous, never asserted tightly)."""

from __future__ import annotations

import asyncio

import pytest

from qscore.batching import BatchPolicy, MicroBatcher, PendingBatch, effective_batch_size


class Recorder:
    def __init__(self, *, hold: asyncio.Event | None = None) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.running = 0
        self.peak = 0
        self._hold = hold

    async def __call__(self, key: str, items: list[int]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self._hold is not None:
                await self._hold.wait()
            self.batches.append((key, items))
        finally:
            self.running -= 1


def test_effective_batch_size_caps_the_model_limit() -> None:
    assert effective_batch_size(64, 0) == 64
    assert effective_batch_size(64, 16) == 16
    assert effective_batch_size(8, 16) == 8
    assert effective_batch_size(0, 16) == 1  # a model without batching: one request per call


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BatchPolicy(max_in_flight=0)
    with pytest.raises(ValueError):
        BatchPolicy(max_delay_s=-1)


def test_pending_batch_takes_an_oversized_item_when_empty() -> None:
    pending: PendingBatch[str] = PendingBatch(max_rows=4)
    assert pending.fits(10)
    pending.add("big", 10)
    assert pending.full and not pending.fits(1)
    assert pending.close() == ["big"] and pending.rows == 0


async def test_flushes_when_full_without_waiting_for_the_delay() -> None:
    record = Recorder()
    batcher: MicroBatcher[str, int] = MicroBatcher(
        handler=record, policy=BatchPolicy(max_delay_s=60, max_in_flight=2)
    )
    for value in range(8):
        batcher.add("m", value, model_max_batch_size=4)
    await asyncio.sleep(0.05)
    assert record.batches == [("m", [0, 1, 2, 3]), ("m", [4, 5, 6, 7])]
    assert batcher.pending_items == 0


async def test_flushes_a_partial_batch_after_the_delay() -> None:
    record = Recorder()
    batcher: MicroBatcher[str, int] = MicroBatcher(handler=record, policy=BatchPolicy(max_delay_s=0.02))
    batcher.add("m", 1, model_max_batch_size=64)
    batcher.add("m", 2, model_max_batch_size=64)
    assert record.batches == []
    await asyncio.sleep(0.2)
    assert record.batches == [("m", [1, 2])]


async def test_keys_are_batched_apart_and_rows_count() -> None:
    record = Recorder()
    batcher: MicroBatcher[str, int] = MicroBatcher(
        handler=record, policy=BatchPolicy(max_delay_s=60), rows_of=lambda value: value
    )
    batcher.add("a", 3, model_max_batch_size=4)
    batcher.add("b", 1, model_max_batch_size=4)
    batcher.add("a", 3, model_max_batch_size=4)  # 3 + 3 > 4: the first batch goes alone
    await asyncio.sleep(0.05)
    assert record.batches == [("a", [3])]
    assert await batcher.drain(5)
    assert sorted(record.batches) == [("a", [3]), ("a", [3]), ("b", [1])]


async def test_the_policy_cap_wins_over_the_model_limit() -> None:
    record = Recorder()
    batcher: MicroBatcher[str, int] = MicroBatcher(
        handler=record, policy=BatchPolicy(max_batch_size=2, max_delay_s=60)
    )
    for value in range(4):
        batcher.add("m", value, model_max_batch_size=64)
    await asyncio.sleep(0.05)
    assert [items for _, items in record.batches] == [[0, 1], [2, 3]]


async def test_in_flight_batches_are_bounded() -> None:
    hold = asyncio.Event()
    record = Recorder(hold=hold)
    batcher: MicroBatcher[str, int] = MicroBatcher(
        handler=record, policy=BatchPolicy(max_delay_s=60, max_in_flight=2)
    )
    for value in range(10):
        batcher.add("m", value, model_max_batch_size=1)
    await asyncio.sleep(0.05)
    assert record.running == 2 and batcher.in_flight_batches == 10
    hold.set()
    assert await batcher.drain(5)
    assert record.peak == 2 and len(record.batches) == 10


async def test_drain_times_out_and_cancel_stops_stuck_batches() -> None:
    record = Recorder(hold=asyncio.Event())
    batcher: MicroBatcher[str, int] = MicroBatcher(handler=record, policy=BatchPolicy(max_delay_s=60))
    batcher.add("m", 1, model_max_batch_size=8)
    assert not await batcher.drain(0.05)
    await batcher.cancel()
    assert batcher.in_flight_batches == 0


async def test_a_failing_handler_does_not_stop_other_batches(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[int]] = []

    async def flaky(key: str, items: list[int]) -> None:
        if items == [0]:
            raise RuntimeError("boom")
        seen.append(items)

    batcher: MicroBatcher[str, int] = MicroBatcher(handler=flaky, policy=BatchPolicy(max_delay_s=60))
    for value in range(3):
        batcher.add("m", value, model_max_batch_size=1)
    assert await batcher.drain(5)
    assert seen == [[1], [2]]
    assert "batch handler failed" in caplog.text


async def test_a_due_batch_keeps_filling_while_every_slot_is_busy() -> None:
    hold = asyncio.Event()
    record = Recorder(hold=hold)
    batcher: MicroBatcher[str, int] = MicroBatcher(
        handler=record, policy=BatchPolicy(max_delay_s=0.01, max_in_flight=1)
    )
    batcher.add("m", 0, model_max_batch_size=4)
    await asyncio.sleep(0.05)  # the first batch runs (and is held); its slot is the only one
    assert record.running == 1
    for value in range(1, 7):  # their delay is up long before the slot frees
        batcher.add("m", value, model_max_batch_size=4)
        await asyncio.sleep(0.02)
    assert batcher.in_flight_batches == 2  # running [0], queued full [1..4]; [5, 6] still filling
    hold.set()
    assert await batcher.drain(5)
    assert [items for _, items in record.batches] == [[0], [1, 2, 3, 4], [5, 6]]
