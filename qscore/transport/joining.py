"""Broker requests that wait for a link join one request: N waiting cost one round trip, not N.

A link carries one request at a time (`qscore.transport.windowing.LinkPool`), and a request
takes a round trip whatever its size. When every link of a pool is busy, calls that queued for
a link one behind another each paid a round trip more than the one before them; with the bus
25 ms away a burst of batches waited hundreds of milliseconds for settlement and reply links.
So a call does not take a link itself: it joins the request (per key: a settlement outcome, a
reply queue) that is waiting for the next free link, and that request carries every call that
joined it by the time it got its link, up to `most` (by each call's `weight`; a single call may
weigh more). Calls coming after it wait for the next request. With a free link at hand a call
goes out alone, at the next turn of the event loop (with the calls of that same turn).

`send(key, link, items)` makes the one request and returns each item's result, in order; if it
raises, every call it carried gets the exception (and falls back as its caller decides, each for
its own messages). A call cancelled before its request went out is not sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - one call's part of a request
R = TypeVar("R")
L = TypeVar("L")

SMOOTHING = 0.3  # weight of a new call's time in `call_s`


class _Waiting(Generic[I, R]):
    __slots__ = ("done", "item")

    def __init__(self, item: I) -> None:
        self.item = item
        self.done: asyncio.Future[R] = asyncio.get_running_loop().create_future()


class JoinedRequests(Generic[K, I, R, L]):
    """`await joined.submit(key, item)`: `item` goes out in a request with whatever else is
    waiting for `key`; returns its result (or raises the request's exception)."""

    def __init__(
        self,
        link: Callable[[K], AbstractAsyncContextManager[L]],
        send: Callable[[K, L, list[I]], Awaitable[list[R]]],
        *,
        weight: Callable[[I], int] = lambda item: 1,
        most: Callable[[K], int] = lambda key: 1 << 30,
    ) -> None:
        self._link = link
        self._send = send
        self._weight = weight
        self._most = most
        self._waiting: dict[K, list[_Waiting[I, R]]] = {}
        self._gathering: set[K] = set()  # keys whose next request waits for a link
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0  # requests sent (each carrying one call or more)
        # A call's smoothed time from `submit` to its result: the round trip plus any wait for
        # a link or for the request it joined, which is what a batch waiting on it spends.
        self.call_s: float | None = None

    async def submit(self, key: K, item: I) -> R:
        started = time.monotonic()
        result = await self._submit(key, item)
        took = time.monotonic() - started
        self.call_s = took if self.call_s is None else (1 - SMOOTHING) * self.call_s + SMOOTHING * took
        return result

    async def _submit(self, key: K, item: I) -> R:
        waiting: _Waiting[I, R] = _Waiting(item)
        self._waiting.setdefault(key, []).append(waiting)
        if key not in self._gathering:
            self._start(key)
        try:
            return await asyncio.shield(waiting.done)
        except asyncio.CancelledError:
            queued = self._waiting.get(key, [])
            if waiting in queued:  # not sent yet: it never will be
                queued.remove(waiting)
            else:  # on its way: its outcome is nobody's to read now
                waiting.done.add_done_callback(_forget_outcome)
            raise

    def _start(self, key: K) -> None:
        self._gathering.add(key)
        task = asyncio.get_running_loop().create_task(self._carry(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry(self, key: K) -> None:
        carried: list[_Waiting[I, R]] = []
        try:
            async with self._link(key) as link:
                carried = self._take(key)
                items = [waiting.item for waiting in carried]
                results = await self._send(key, link, items) if items else []
            if len(results) != len(carried):  # never hand one call another's result
                raise RuntimeError(f"a joined request gave {len(results)} results for {len(carried)} calls")
            if carried:
                self.requests += 1
        except BaseException as exc:
            carried = carried or self._take(key, every=True)
            failure = exc if isinstance(exc, Exception) else RuntimeError(f"request cancelled: {exc!r}")
            for waiting in carried:
                if not waiting.done.done():
                    waiting.done.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for waiting, result in zip(carried, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(result)

    def _take(self, key: K, *, every: bool = False) -> list[_Waiting[I, R]]:
        """The calls this request carries (up to `most`, at least one); those left over get a
        request of their own. Calls coming from now on wait for the next request."""
        self._gathering.discard(key)
        queued = self._waiting.pop(key, [])
        most, weight = self._most(key), 0
        taken: list[_Waiting[I, R]] = []
        for index, waiting in enumerate(queued):
            weight += self._weight(waiting.item)
            if taken and not every and weight > most:
                self._waiting[key] = queued[index:]
                self._start(key)
                break
            taken.append(waiting)
        return taken


def _forget_outcome(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # read, so that asyncio does not log it as never retrieved
