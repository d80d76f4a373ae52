"""How long a new batch waits for company: measured, not fixed (BentoML's adaptive batching idea).

A fixed delay costs every request that delay when traffic is light, and buys nothing: no other
request arrives in time to share the call. So the batcher measures, per key, the arrival rate
(rows per second) and the service time of a batch (handler start to slot free: inference,
replies and settlement), and waits only as long as it is expected to pay:

- fewer than one more row expected within the delay bound (rate x bound < 1): no wait at all;
  the batch goes out on the next turn of the event loop, with whatever one receive brought;
- otherwise the time the batch needs to fill at the measured rate, capped by the bound and by
  one service time (waiting longer than a batch takes to run is worse than sending now: the
  next batch fills while this one runs, and a batch whose delay is up while every slot is busy
  keeps filling anyway, see qscore.batching.batcher).

The configured delay is therefore an upper bound, reached only under load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


def adaptive_delay(
    *, rate_per_s: float, service_s: float | None, max_delay_s: float, rows_left: int
) -> float:
    """Seconds the first row of a batch should wait (0 = send on the next loop turn)."""
    if rows_left <= 0 or rate_per_s * max_delay_s < 1.0:
        return 0.0
    bound = max_delay_s if service_s is None else min(max_delay_s, service_s)
    return min(bound, rows_left / rate_per_s)


@dataclass
class ArrivalRate:
    """Rows per second, counted over windows of `window_s` and smoothed; decays while idle."""

    window_s: float = 0.05
    smoothing: float = 0.3
    rate_per_s: float = 0.0
    _window_start: float | None = None
    _rows: int = 0

    def observe(self, now: float, rows: int) -> None:
        self.current(now)
        self._rows += rows

    def current(self, now: float) -> float:
        if self._window_start is None:
            self._window_start = now
            return self.rate_per_s
        windows = int((now - self._window_start) / self.window_s)
        if windows <= 0:
            return self.rate_per_s
        # The window that just closed holds the rows counted; the (windows - 1) after it none.
        self.rate_per_s += self.smoothing * (self._rows / self.window_s - self.rate_per_s)
        self.rate_per_s *= (1.0 - self.smoothing) ** min(windows - 1, 1000)
        self._rows = 0
        self._window_start += windows * self.window_s
        return self.rate_per_s


@dataclass
class ServiceTime:
    """Smoothed seconds from a batch's start to its slot freeing."""

    smoothing: float = 0.2
    seconds: float | None = None

    def observe(self, seconds: float) -> None:
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.seconds += self.smoothing * (seconds - self.seconds)


class AdaptiveDelay:
    """Per-key arrival rates and service times, and the delay they call for."""

    def __init__(self, max_delay_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._rates: dict[Hashable, ArrivalRate] = {}
        self._service: dict[Hashable, ServiceTime] = {}

    def arrived(self, key: Hashable, rows: int) -> None:
        self._rates.setdefault(key, ArrivalRate()).observe(self._clock(), rows)

    def served(self, key: Hashable, seconds: float) -> None:
        self._service.setdefault(key, ServiceTime()).observe(seconds)

    def delay_for(self, key: Hashable, rows_left: int) -> float:
        rate = self._rates.get(key)
        service = self._service.get(key)
        return adaptive_delay(
            rate_per_s=rate.current(self._clock()) if rate else 0.0,
            service_s=service.seconds if service else None,
            max_delay_s=self.max_delay_s,
            rows_left=rows_left,
        )
