"""Exponential backoff: the one formula both runtimes wait by (the worker's pauses on transient
faults, workers/backoff.py; the Functions app's retries, functions/retry.py and its local engine)."""

from __future__ import annotations

import math


def backoff_delay(first: float, failures: int, *, coefficient: float = 2.0, cap: float = math.inf) -> float:
    """The wait after `failures` consecutive failures (1 = the first): `first` times `coefficient`
    to the power `failures - 1`, at most `cap`. In any unit (seconds or milliseconds)."""
    try:
        growth = coefficient ** max(0, failures - 1)
    except OverflowError:  # so many failures that only the cap is left
        growth = math.inf
    return min(cap, first * growth)
