"""At most N batches run at once; one task per batch, never one per item."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class InFlightBatches:
    """Runs batch coroutines as tasks, at most `limit` at a time; the rest wait for a slot.

    Several batches in flight keep Triton's own dynamic batcher fed while a reply is being sent.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self.limit = limit

    def start(self, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guarded(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, run: Callable[[], Awaitable[None]]) -> None:
        async with self._slots:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The batch handler settles its own messages; anything reaching here is a bug,
                # and the broker redelivers the messages once their locks lapse.
                log.exception("batch handler failed")

    @property
    def count(self) -> int:
        """Batches started and not finished (running or waiting for a slot)."""
        return len(self._tasks)

    async def wait(self, within_s: float | None = None) -> bool:
        """Wait for every started batch; False when `within_s` passed first."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=within_s)
        return not pending

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
