"""How many broker requests of one kind to keep in flight: the measured rate times the round trip.

A request to the broker (settle a batch, send a batch of replies) takes one round trip whatever
its size. Taking turns on one link caps the rate at one request per round trip: on loopback
(~0.1 ms) nobody notices, at an Azure namespace's 20-100 ms a worker completes a few dozen
messages per round trip and Triton idles. So requests go out several at once, each on its own
link, and how many is sized like a TCP window, from what is measured (Little's law):

    size = ceil(requests per second x round-trip seconds) + HEADROOM, within [1, ceiling]

The rate counts requests as they are asked for, including those that wait for a link. A window
too small for the demand holds the rate down, so it grows like TCP's slow start: a request that
finds the window full doubles it (`waited`), at most once per measured round trip, at once, not
at the next sample: a drain lasts a couple of seconds, and growing from 1 in 0.25 s steps took
most of a second of it with the bus 25 ms away. A sample in which requests waited never shrinks
the window. An idle window keeps its last size. Both figures are smoothed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

SAMPLE_S = 0.25
SMOOTHING = 0.3  # weight of a new sample
HEADROOM = 1  # requests beyond the measured need: room for the demand to show it is larger


class InFlightWindow:
    """`asked(wanting)` when a request is wanted (`wanting`: requests in flight or waiting, this one
    included), `answered(seconds)` with its round trip; `size` is the current window."""

    def __init__(self, *, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be >= 1")
        self.ceiling = ceiling
        self.size = 1
        self.rate: float | None = None  # requests asked per second
        self.round_trip_s: float | None = None
        self._clock = clock
        self._asked = 0
        self._most_wanting = 0
        self._sample_started = clock()
        self._grown_at = -math.inf

    def asked(self, wanting: int = 1) -> None:
        self._asked += 1
        self._most_wanting = max(self._most_wanting, wanting)
        now = self._clock()
        if now - self._sample_started >= SAMPLE_S:
            self._sample(now)

    def waited(self) -> None:
        """A request found the window full: double it, within the ceiling, once a round trip is
        measured and at most once per round trip (the requests let in meanwhile show whether
        that was enough)."""
        rtt = self.round_trip_s
        now = self._clock()
        if rtt is None or self.size >= self.ceiling or now - self._grown_at < rtt:
            return
        self.size = min(self.ceiling, 2 * self.size)
        self._grown_at = now

    def answered(self, seconds: float) -> None:
        rtt = self.round_trip_s
        self.round_trip_s = seconds if rtt is None else (1 - SMOOTHING) * rtt + SMOOTHING * seconds

    def _sample(self, now: float) -> None:
        sample = self._asked / (now - self._sample_started)
        most_wanting = self._most_wanting
        self._asked, self._most_wanting, self._sample_started = 0, 0, now
        self.rate = sample if self.rate is None else (1 - SMOOTHING) * self.rate + SMOOTHING * sample
        if self.round_trip_s is None:
            return
        need = math.ceil(self.rate * self.round_trip_s) + HEADROOM
        if most_wanting > self.size:  # requests waited for a link: the rate understates the need
            need = max(need, self.size, min(2 * self.size, most_wanting))
        self.size = max(1, min(self.ceiling, need))


class Link(Protocol):
    """An SDK sender or receiver: one request at a time on it, closed when done."""

    async def close(self) -> None: ...


L = TypeVar("L", bound=Link)


class LinkPool(Generic[L]):
    """Links of one kind (each its own SDK handler), one request at a time on each; links are
    opened (`open_link`) as the window grows, up to its ceiling, and kept. A request takes any
    free link it finds, even above the window (a window that shrank while its links stayed open
    would only make requests wait beside idle links); the window bounds how many links are
    opened, so a request beyond it waits for one to be set free. `async with pool.use() as
    link:` waits for a free one, never for a lock held by another request's round trip. A
    link's first request (it opens the link: several round trips) does not count towards the
    measured round trip.

    With `attach` (an async call that opens a link: its attach takes several round trips), links
    are attached in the background, ahead of need: one more whenever every attached link is busy
    (up to the ceiling), and a request never waits for an attach while another link can carry it;
    it takes whichever comes first, a link set free or a link attached. Without it a request that
    finds no free link below the window opens one and pays the attach itself."""

    def __init__(
        self,
        open_link: Callable[[], L] | None,
        *,
        ceiling: int,
        first: L | None = None,
        attach: Callable[[L], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if open_link is None and first is None:
            raise ValueError("a link pool needs a first link or a way to open links")
        self.window = InFlightWindow(ceiling=ceiling if open_link is not None else 1, clock=clock)
        self._open_link = open_link
        self._clock = clock
        self.links: list[L] = [] if first is None else [first]
        self._idle: list[L] = list(self.links)
        self._used: set[int] = set()
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._attach = attach
        self._attaching: set[asyncio.Task[None]] = set()
        self.waited_s = 0.0  # total time requests waited for a link (diagnosis)
        self.requests = 0

    def describe(self) -> str:
        """One line for a log at close: how many links, and how long requests waited for one."""
        rtt = self.window.round_trip_s
        round_trip = "-" if rtt is None else f"{rtt * 1000:.1f} ms"
        return (
            f"{len(self.links)} links (window {self.window.size}), {self.requests} requests waited "
            f"{self.waited_s:.2f} s in all for a link, round trip {round_trip}"
        )

    @property
    def in_flight(self) -> int:
        return self._busy

    @contextlib.asynccontextmanager
    async def use(self, *, ahead: bool = True) -> AsyncIterator[L]:
        """A free link to this request alone; `ahead=False`: this request (a link's priming, say)
        does not attach another link when it leaves every attached link busy."""
        self.window.asked(self._busy + len(self._waiters) + 1)
        self.requests += 1
        link = await self._acquire(ahead)
        started = self._clock()
        answered = False
        try:
            yield link
            answered = True
        finally:
            if answered and id(link) in self._used:
                self.window.answered(self._clock() - started)
            self._used.add(id(link))
            await self._release(link)

    async def _acquire(self, ahead: bool) -> L:
        waited_from: float | None = None
        try:
            while True:
                if self._closed:
                    raise RuntimeError("the link pool is closed")
                if self._idle:
                    self._busy += 1
                    if ahead:
                        self._attach_ahead()
                    return self._idle.pop()
                if self._busy < self.window.size:
                    if self._open_link is not None and len(self.links) < self.window.ceiling:
                        if self._attach is None:
                            link = self._open_link()
                            self.links.append(link)
                            self._busy += 1
                            return link
                        # Attach as many as the requests now wanting a link, within the window.
                        wanting = self._busy + len(self._waiters) + 1
                        wanted = min(self.window.ceiling, self.window.size, wanting)
                        while len(self.links) < wanted:
                            self._start_attach()
                elif self.window.size < self.window.ceiling:
                    self.window.waited()
                    if self._busy < self.window.size:
                        continue  # grown: take a free link, or attach one
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                if waited_from is None:
                    waited_from = self._clock()
                try:
                    await waiter
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
        finally:
            if waited_from is not None:
                self.waited_s += self._clock() - waited_from

    def _attach_ahead(self) -> None:
        """Every attached link busy: attach one more now, so the next request finds it ready."""
        all_busy = not self._attaching and self._busy >= len(self.links)
        can_open = self._attach is not None and self._open_link is not None
        if all_busy and can_open and len(self.links) < self.window.ceiling:
            self._start_attach()

    def _start_attach(self) -> None:
        assert self._open_link is not None and self._attach is not None
        link = self._open_link()
        self.links.append(link)
        task = asyncio.get_running_loop().create_task(self._attach_then_offer(link))
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

    async def _attach_then_offer(self, link: L) -> None:
        assert self._attach is not None
        try:
            # A failed attach is the SDK's to retry: the link's first request opens it again, and
            # reports the failure as any request would.
            with contextlib.suppress(Exception):
                await self._attach(link)
                self._used.add(id(link))  # attached: its first request is an ordinary round trip
        finally:
            if self._closed:
                with contextlib.suppress(Exception):
                    await link.close()
            else:
                self._offer(link)

    def _offer(self, link: L) -> None:
        self._idle.append(link)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _release(self, link: L) -> None:
        self._busy -= 1
        if self._closed:
            with contextlib.suppress(Exception):
                await link.close()
            return
        self._offer(link)

    async def close(self) -> None:
        """Close every idle link now, each busy one when its request ends; wake the waiters."""
        self._closed = True
        idle, self._idle = self._idle, []
        for task in list(self._attaching):
            task.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for link in idle:
            with contextlib.suppress(Exception):
                await link.close()
