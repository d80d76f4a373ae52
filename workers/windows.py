"""How many batches the worker keeps in flight: its setting, plus those waiting on the broker.

A batch holds its slot from the Triton call through its replies and settlement, which take two
broker round trips (replies must be sent before the requests are completed: at-least-once). At
loopback that is nothing; at Azure's 20-100 ms a fixed `max_in_flight_batches` would let only
that many batches per two round trips through, and Triton would idle. So the bound is the
setting (the batches Triton works on) plus the batches that, by Little's law, are waiting on the
broker at the measured batch rate:

    limit = max_in_flight_batches + ceil(batches per second x (reply + settle round trip))

within [setting, setting x MAX_FACTOR]. A limit that holds the rate down still grows: the
extra slots are a share of the limit (round trip / time a batch holds its slot), so it climbs
geometrically to the point where the setting's worth of batches is scoring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

SAMPLE_S = 0.5
SMOOTHING = 0.3
MAX_FACTOR = 8


class BatchSlots:
    """`tick(started, broker_wait_s)` each receive turn; returns the in-flight bound to use."""

    def __init__(self, setting: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.setting = setting
        self.limit = setting
        self.rate: float | None = None  # batches started per second
        self._clock = clock
        self._sample_started = clock()
        self._started_before = 0

    def tick(self, started: int, broker_wait_s: float) -> int:
        now = self._clock()
        elapsed = now - self._sample_started
        if elapsed < SAMPLE_S:
            return self.limit
        sample = (started - self._started_before) / elapsed
        self._started_before, self._sample_started = started, now
        if sample == 0:  # idle: keep the last bound
            return self.limit
        smoothed = sample if self.rate is None else (1 - SMOOTHING) * self.rate + SMOOTHING * sample
        self.rate = max(sample, smoothed)  # up at once, down smoothed (as workers/prefetch.py)
        waiting = math.ceil(self.rate * broker_wait_s)
        self.limit = min(self.setting * MAX_FACTOR, self.setting + waiting)
        return self.limit
