"""At most N batches run at once; one task per batch, never one per item."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class InFlightBatches:
    """Runs batch coroutines as tasks; the owner starts one only while `has_room`.

    Several batches in flight keep Triton's own dynamic batcher fed while a reply is being sent.
    `on_done` runs (from the event loop) each time a batch finishes and frees its slot.
    """

    def __init__(self, limit: int, *, on_done: Callable[[], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_done = on_done
        self.limit = limit

    @property
    def has_room(self) -> bool:
        return len(self._tasks) < self.limit

    def start(self, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guarded(run))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._on_done is not None:
            self._on_done()

    async def _guarded(self, run: Callable[[], Awaitable[None]]) -> None:
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
        """Batches running."""
        return len(self._tasks)

    async def wait(self, within_s: float | None = None) -> bool:
        """Wait for every running batch; False when `within_s` passed first."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=within_s)
        return not pending

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
