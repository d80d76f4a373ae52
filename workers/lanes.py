"""Priority lanes: which lane's received messages go into the worker next.

Service Bus has no message priority, so lanes are queues (`scoring-requests-high` above
`scoring-requests`). The worker runs one receive session per lane (its own receiver, settler,
batcher, lock renewal and drain) and they share the process. When several lanes have received
messages at once, `WeightedTurns` lets them in by smooth weighted round-robin (nginx's): with
weights 4:1 the high lane gets four turns for each of the low lane's while both are busy, and a
lane alone gets every turn, so a busy high lane never starves the low one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Mapping


class WeightedTurns:
    """One lane at a time: `async with turns.turn(lane): ...`; waiting lanes go by weight."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        if not weights or any(weight < 1 for weight in weights.values()):
            raise ValueError("every lane needs a weight >= 1")
        self._weights = dict(weights)
        self._current = dict.fromkeys(weights, 0)
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {lane: deque() for lane in weights}
        self._busy = False
        self.granted = dict.fromkeys(weights, 0)  # turns per lane (for tests and the bench)

    @property
    def lanes(self) -> list[str]:
        return list(self._weights)

    @contextlib.asynccontextmanager
    async def turn(self, lane: str) -> AsyncIterator[None]:
        if self._busy or any(self._waiting.values()):
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[lane].append(granted)
            self._grant_next()
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release()  # it was ours already: pass it on
                else:
                    self._waiting[lane].remove(granted)
                raise
        else:
            self._busy = True
            self.granted[lane] += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._busy = False
        self._grant_next()

    def _grant_next(self) -> None:
        lanes = [lane for lane, queue in self._waiting.items() if queue]
        if self._busy or not lanes:
            return
        total = sum(self._weights[lane] for lane in lanes)
        for lane in lanes:
            self._current[lane] += self._weights[lane]
        chosen = max(lanes, key=self._current.__getitem__)
        self._current[chosen] -= total
        self._busy = True
        self.granted[chosen] += 1
        self._waiting[chosen].popleft().set_result(None)
