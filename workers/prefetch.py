"""How many messages to lock ahead of scoring, sized from the worker's measured throughput.

Messages in the SDK's prefetch buffer are locked at the broker, but the worker renews only the
messages it has received, so a buffered message's lock runs down while it waits. The window is
therefore what the worker scores in a short time plus one broker round trip (the link credit
must cover what arrives while the next credit is on its way: bandwidth x delay), and never more
than it scores in a fraction of the lock duration:

    window = min(prefetch, rate x lock duration x LOCK_FRACTION,
                 max(floor, rate x (AHEAD_S + round trip))), >= 1

A slow model (say 5 msg/s against a 30 s lock) gets a window of a few messages instead of a
buffer of hundreds whose locks lapse before they are taken, which is how lost locks, duplicate
replies and redeliveries snowball. A fast one keeps ~AHEAD_S of work ready: enough to hide the
receive round trip, small enough that a receive does not dump hundreds of messages at once into
the batcher (on the 2-core demo, fixed prefetch 64-128 beat 512 by 25-45% in throughput, and
halved queue wait). The round trip is the measured one of the worker's settlement requests
(qscore.transport.settlement), the same broker at the same distance. Without it a window of
rate x 0.1 s let only that much arrive per round trip: at 50 ms, a third of the loopback rate.

The lock rule wins over the floor. Until the first measurement the window is 1 (a slow start:
nothing is known about the model yet). Between samples it also grows the way TCP's slow start
does: a receive that took the whole window at once, with nothing left buffered and room in the
held set for as much again, says the window, not the worker, set the pace, so it doubles, up to
FLOOR until the rate is measured and the lock rule after. Growing only once per SAMPLE_S, from
a rate the small window itself held down, took 1.5 s to reach the rate of a drain with the bus
5 ms away: a quarter of a 3,000-message drain ran at a fraction of its speed
(`python -m qscore_tools.bench.drain`, docs/benchmarks.md). Likewise the first rate is taken as
soon as FLOOR messages have finished in more than SAMPLE_S / 5 of busy time, not after a whole
SAMPLE_S: with the bus 25 ms away the window otherwise sat at FLOOR, 16 messages a round trip,
for the first half second of a 2.5 s drain. The rate is
finished messages (completed or dead-lettered) per second of time the worker held work, so idle
time does not drag it down; it is sampled every SAMPLE_S, follows a higher sample at once and a
lower one smoothed, and is kept while idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from qscore.transport import sdk_hooks

log = logging.getLogger(__name__)

AHEAD_S = 0.1
LOCK_FRACTION = 0.25
FLOOR = 16
SAMPLE_S = 0.5
SMOOTHING = 0.3  # weight of a new sample


class PrefetchWindow:
    """The current prefetch size; `tick(held)` each receive-loop turn, `finished(n)` on settlement."""

    def __init__(self, *, ceiling: int, floor: int = FLOOR, ahead_s: float = AHEAD_S) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.ahead_s = ahead_s
        self.size = min(1, ceiling)  # grows as soon as throughput is measured
        self.rate: float | None = None
        self.lock_s: float | None = None
        self.round_trip_s = 0.0
        self._finished = 0
        self._busy_s = 0.0
        self._sample_started = self._last_tick = time.monotonic()
        self._was_busy = False
        self._provisional = False  # the rate is an early first sample's

    def observe_lock(self, messages: Iterable[Any]) -> None:
        """Learn the queue's lock duration from a freshly received message."""
        if self.lock_s is not None:
            return
        for message in messages:
            locked_until = getattr(message, "locked_until_utc", None)
            if locked_until is not None:
                self.lock_s = max(0.5, locked_until.timestamp() - time.time())
                return

    def finished(self, count: int) -> None:
        self._finished += count

    def received(self, count: int, *, buffered: int, room: int) -> None:
        """A receive took `count` messages, left `buffered` in the SDK's buffer, and the held set
        has `room` left: double the window if it was all taken at once and there is room for it."""
        if self.ceiling == 0 or count < self.size or buffered or room < 2 * self.size:
            return
        cap = self.floor if self.rate is None else self.ceiling
        if self.rate is not None and self.lock_s is not None:
            cap = min(cap, max(1, int(self.rate * self.lock_s * LOCK_FRACTION)))
        grown = min(self.ceiling, cap, 2 * self.size)
        if grown > self.size:
            self.size = grown

    def tick(self, *, held: int, round_trip_s: float | None = None) -> int:
        """Account the time since the last tick; re-size once per SAMPLE_S; returns the size.
        `round_trip_s`: the broker round trip measured meanwhile, if any."""
        if round_trip_s is not None:
            self.round_trip_s = round_trip_s
        now = time.monotonic()
        if self._was_busy:
            self._busy_s += now - self._last_tick
        self._last_tick, self._was_busy = now, held > 0
        first_ready = self.rate is None and self._finished >= self.floor and self._busy_s > SAMPLE_S / 5
        if first_ready or now - self._sample_started >= SAMPLE_S:
            self._sample(now, first=first_ready)
        return self.size

    def _sample(self, now: float, *, first: bool = False) -> None:
        if self._busy_s > SAMPLE_S / 5 and self._finished:
            sample = self._finished / self._busy_s
            # Up at once, down smoothed: a window that holds the rate down must not also hold
            # back its own growth (at a 50 ms round trip a smoothed climb took seconds). An early
            # first sample (a short one) is replaced by the next, not kept as a high mark.
            smoothed = sample if self.rate is None else (1 - SMOOTHING) * self.rate + SMOOTHING * sample
            self.rate = sample if self._provisional else max(sample, smoothed)
            self._provisional = first
        self._finished, self._busy_s = 0, 0.0
        if not first:  # an early first sample keeps the SAMPLE_S grid
            self._sample_started = now
        if self.rate is None or self.ceiling == 0:
            return
        size = min(self.ceiling, max(self.floor, round(self.rate * (self.ahead_s + self.round_trip_s))))
        if self.lock_s is not None:
            size = min(size, max(1, int(self.rate * self.lock_s * LOCK_FRACTION)))
        if size != self.size:
            log.debug("prefetch window %d -> %d (%.0f msg/s)", self.size, size, self.rate)
            self.size = size


def apply_link_credit(receiver: Any, window: int) -> bool:
    """Make the SDK receiver ask the broker for `window` messages ahead from its next credit
    refill on. The SDK fixes `prefetch_count` when the receiver is made, so this sets its private
    fields (guarded: on another SDK version it does nothing and the first window stays)."""
    if window < 1 or not getattr(receiver, "_prefetch_count", 0):
        return False  # no prefetch: the SDK asks for exactly what each receive call wants
    receiver._prefetch_count = window  # used when the SDK re-creates its handler (reconnect)
    handler = getattr(receiver, "_handler", None)
    if handler is None:
        return False
    if not hasattr(handler, "_link_credit"):
        sdk_hooks.fallback("client.link_credit")
        return False
    handler._link_credit = window + 1  # the SDK's own "+1" (see ServiceBusReceiver._create_handler)
    return True
