"""The micro-batcher: one pending batch per key, sent when full or when its delay is up.

A batch whose delay is up while every in-flight slot is busy keeps filling (up to its size)
until a slot frees: it would wait for the slot anyway, so waiting in a bigger batch costs no
latency and saves Triton calls, reply sends and settlements. Without this, a steady trickle
of messages (a receive that returns as soon as anything arrives) turns into a queue of tiny
batches behind the in-flight bound, and throughput collapses to slots x batch / round trip.
Full batches that find no free slot queue in arrival order and go first when one frees.
With an adaptive policy the delay itself is measured per key (qscore.batching.adaptive).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from qscore.batching.adaptive import AdaptiveDelay
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
        self._due: dict[K, None] = {}  # delay up, no slot free: keeps filling (ordered by age)
        self._queued: deque[tuple[K, list[T]]] = deque()  # closed batches waiting for a slot
        self._in_flight = InFlightBatches(policy.max_in_flight, on_done=self._slot_freed)
        self._adaptive = AdaptiveDelay(policy.max_delay_s) if policy.adaptive else None
        self.started = 0  # batches started so far (the worker sizes its in-flight bound by the rate)

    def add(self, key: K, item: T, *, model_max_batch_size: int) -> None:
        """Queue `item` under `key`; the model's max batch size is capped by the policy."""
        rows = self._rows_of(item)
        pending = self._pending.get(key)
        if pending is None:
            pending = PendingBatch(max_rows=self._policy.batch_size_for(model_max_batch_size))
            self._pending[key] = pending
        if not pending.fits(rows):
            self._close(key)
        if self._adaptive is not None:
            self._adaptive.arrived(key, rows)
        if not pending.items:
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(self._delay(key, pending.max_rows - rows), self._delay_up, key)
        pending.add(item, rows)
        if pending.full:
            self._close(key)

    def _delay(self, key: K, rows_left: int) -> float:
        if self._adaptive is None:
            return self._policy.max_delay_s
        return self._adaptive.delay_for(key, rows_left)

    def _delay_up(self, key: K) -> None:
        pending = self._pending.get(key)
        if pending is None or not pending.items:
            return
        pending.timer = None
        if self._in_flight.has_room and not self._queued:
            self._close(key)
        else:
            self._due[key] = None

    def _close(self, key: K) -> None:
        """The batch under `key` stops filling: it runs now, or queues for the next free slot."""
        self._due.pop(key, None)
        pending = self._pending.get(key)
        if pending is None or not pending.items:
            return
        items = pending.close()
        if self._in_flight.has_room and not self._queued:
            self._start(key, items)
        else:
            self._queued.append((key, items))

    def _start(self, key: K, items: list[T]) -> None:
        self.started += 1
        self._in_flight.start(lambda: self._timed(key, items))

    @property
    def max_in_flight(self) -> int:
        return self._in_flight.limit

    def resize_in_flight(self, limit: int) -> None:
        """Let `limit` batches run at once from now on (at least one); waiting ones start now."""
        self._in_flight.limit = max(1, limit)
        self._slot_freed()

    async def _timed(self, key: K, items: list[T]) -> None:
        started = time.monotonic()
        try:
            await self._handler(key, items)
        finally:
            if self._adaptive is not None:
                self._adaptive.served(key, time.monotonic() - started)

    def _slot_freed(self) -> None:
        while self._in_flight.has_room:
            if self._queued:
                self._start(*self._queued.popleft())
            elif self._due:
                self._close(next(iter(self._due)))
            else:
                return

    def flush_all(self) -> None:
        """Send every pending batch now, or queue it for the next free slot (used when draining)."""
        for key in list(self._pending):
            self._close(key)

    @property
    def pending_items(self) -> int:
        return sum(len(batch.items) for batch in self._pending.values())

    @property
    def in_flight_batches(self) -> int:
        """Batches running or closed and waiting for a slot."""
        return self._in_flight.count + len(self._queued)

    async def drain(self, within_s: float | None = None) -> bool:
        """Flush what is pending and wait for every batch; False when `within_s` passed first."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        self.flush_all()
        while self._in_flight.count or self._queued:
            self._slot_freed()  # normally done as batches finish; a no-op unless a slot is idle
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await self._in_flight.wait(left)
        return True

    async def cancel(self) -> None:
        """Stop batches still running (after a drain timed out); their items are not handled."""
        for pending in self._pending.values():
            pending.close()
        self._due.clear()
        self._queued.clear()
        await self._in_flight.cancel()
