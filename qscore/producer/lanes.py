"""One sender link per request lane (queue), opened when the lane is first used.

Service Bus has no message priority, so priority lanes are queues (`scoring-requests`,
`scoring-requests-high`); workers receive from every lane and serve the higher one first
(workers/lanes.py). Sends on one lane go out one at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class LaneSenders:
    """Senders by queue name on one client; `async with senders.use(queue) as sender:` sends."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._senders: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def open(self, queue: str) -> Any:
        """The lane's sender, attached (the first call per lane attaches the link)."""
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._client.get_queue_sender(queue)
            await sender.__aenter__()
            self._senders[queue] = sender
        return sender

    @contextlib.asynccontextmanager
    async def use(self, queue: str) -> Any:
        lock = self._locks.setdefault(queue, asyncio.Lock())
        async with lock:
            yield await self.open(queue)

    async def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        # Closing a link waits for the broker's detach: close them side by side.
        await asyncio.gather(*(sender.close() for sender in senders), return_exceptions=True)
