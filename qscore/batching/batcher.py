"""The micro-batcher: one pending batch per key, flushed when full or when its delay is up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from qscore.batching.in_flight import InFlightBatches
from qscore.batching.pending import PendingBatch
from qscore.batching.policy import BatchPolicy

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

BatchHandler = Callable[[K, list[T]], Awaitable[None]]


def _one_row(_: object) -> int:
    return 1


class MicroBatcher(Generic[K, T]):
    """Collects items per key; `handler(key, items)` runs once per batch under the in-flight bound.

    `add` never blocks: the caller bounds how many items it holds (the worker asks the broker
    only for as many messages as it has room for), so back-pressure lives in one place.
    """

    def __init__(
        self,
        *,
        handler: BatchHandler[K, T],
        policy: BatchPolicy,
        rows_of: Callable[[T], int] = _one_row,
    ) -> None:
        self._handler = handler
        self._policy = policy
        self._rows_of = rows_of
        self._pending: dict[K, PendingBatch[T]] = {}
        self._in_flight = InFlightBatches(policy.max_in_flight)

    def add(self, key: K, item: T, *, model_max_batch_size: int) -> None:
        """Queue `item` under `key`; the model's max batch size is capped by the policy."""
        rows = self._rows_of(item)
        pending = self._pending.get(key)
        if pending is None:
            pending = PendingBatch(max_rows=self._policy.batch_size_for(model_max_batch_size))
            self._pending[key] = pending
        if not pending.fits(rows):
            self._flush(key)
        if not pending.items:
            pending.timer = asyncio.get_running_loop().call_later(self._policy.max_delay_s, self._flush, key)
        pending.add(item, rows)
        if pending.full:
            self._flush(key)

    def _flush(self, key: K) -> None:
        pending = self._pending.get(key)
        if pending is None or not pending.items:
            return
        items = pending.close()
        self._in_flight.start(lambda: self._handler(key, items))

    def flush_all(self) -> None:
        """Send every pending batch now (used when draining)."""
        for key in list(self._pending):
            self._flush(key)

    @property
    def pending_items(self) -> int:
        return sum(len(batch.items) for batch in self._pending.values())

    @property
    def in_flight_batches(self) -> int:
        return self._in_flight.count

    async def drain(self, within_s: float | None = None) -> bool:
        """Flush what is pending and wait for every batch; False when `within_s` passed first."""
        self.flush_all()
        return await self._in_flight.wait(within_s)

    async def cancel(self) -> None:
        """Stop batches still running (after a drain timed out); their items are not handled."""
        for pending in self._pending.values():
            pending.close()
        await self._in_flight.cancel()
