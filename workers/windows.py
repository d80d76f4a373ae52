"""How many batches the worker keeps in flight: its setting, plus those waiting on the broker.

A batch holds its slot from the Triton call through its replies and settlement, which take two
broker round trips (replies must be sent before the requests are completed: at-least-once). At
loopback that is nothing; at Azure's 20-100 ms a fixed `max_in_flight_batches` would let only
that many batches per two round trips through, and Triton would idle. So the bound is the
setting (the batches Triton works on) plus the batches that, by Little's law, are waiting on the
broker at the measured batch rate:

    limit = max_in_flight_batches + ceil(batches per second x (reply + settle time))

(each the measured time a call spends on the broker, any wait for a link or for the request it
joined included: `MessageSettler.call_s`, `ReplySender.call_s`; the round trips alone left out
those waits)

within [setting, setting x MAX_FACTOR]. A limit that holds the rate down still grows: the
extra slots are a share of the limit (round trip / time a batch holds its slot), so it climbs
geometrically to the point where the setting's worth of batches is scoring. That climb took
seconds where a batch spends most of its slot time on the broker (with the bus 25 ms away,
a fresh worker's limit was still 6-7 at the end of a 2,000-message drain while hundreds of
messages waited for a slot), so given the batches in flight the bound also goes straight to
that point: a batch holds its slot for in-flight / rate seconds (Little's law), of which the
share f = rate x round trip / in-flight waits on the broker, so

    limit >= ceil(setting / (1 - f))     (f >= 1: setting x MAX_FACTOR)

keeps the setting's worth scoring. Where Triton binds, a batch's slot time is mostly Triton's
and f is small: the bound stays near the setting.

The first sample is taken early, once the setting's worth of batches has started and
SAMPLE_S / 5 has passed (a fresh worker's first half second is a fifth of a drain with the bus
25 ms away); from then on every SAMPLE_S.
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
        self._in_flight = 0  # batches in flight at the last tick (None given: not tracked)
        self._in_flight_s = 0.0  # batch-seconds in flight this sample
        self._last_tick = self._sample_started

    def tick(self, started: int, broker_wait_s: float, in_flight: int | None = None) -> int:
        """`started`: batches started so far; `in_flight`: batches holding a slot now."""
        now = self._clock()
        if in_flight is not None:
            self._in_flight_s += self._in_flight * (now - self._last_tick)
            self._in_flight = in_flight
        self._last_tick = now
        elapsed = now - self._sample_started
        enough = started - self._started_before >= self.setting
        first = self.rate is None and elapsed >= SAMPLE_S / 5 and enough
        if elapsed < SAMPLE_S and not first:
            return self.limit
        sample = (started - self._started_before) / elapsed
        average_in_flight = self._in_flight_s / elapsed
        self._started_before, self._sample_started, self._in_flight_s = started, now, 0.0
        if sample == 0:  # idle: keep the last bound
            return self.limit
        smoothed = sample if self.rate is None else (1 - SMOOTHING) * self.rate + SMOOTHING * sample
        self.rate = max(sample, smoothed)  # up at once, down smoothed (as workers/prefetch.py)
        ceiling = self.setting * MAX_FACTOR
        limit = self.setting + math.ceil(self.rate * broker_wait_s)
        if average_in_flight > 0:
            on_broker = sample * broker_wait_s / average_in_flight  # f: this sample's own share
            limit = max(limit, ceiling if on_broker >= 1 else math.ceil(self.setting / (1 - on_broker)))
        self.limit = min(ceiling, limit)
        return self.limit
