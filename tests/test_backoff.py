"""The one backoff formula (qscore/backoff.py) that the worker's pauses and the Functions app's
retries both use."""

from __future__ import annotations

import math

from functions.retry import policy_delay_s, retry_delay_ms
from functions.settings import RetryPolicy
from qscore.backoff import backoff_delay


def test_backoff_grows_by_its_coefficient_up_to_its_cap() -> None:
    assert [backoff_delay(0.5, n, cap=3.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(1000, 3, coefficient=1.5) == 2250
    assert backoff_delay(1.0, 0) == 1.0  # no failure yet: the first wait
    assert backoff_delay(1.0, 10_000, cap=7.0) == 7.0 and backoff_delay(1.0, 10_000) == math.inf


def test_the_functions_retries_wait_by_the_same_formula() -> None:
    policy = RetryPolicy(first_retry_ms=1000, backoff_coefficient=2.0, max_retry_ms=5000, max_attempts=5)
    assert [policy_delay_s(policy, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    options = {"firstRetryIntervalInMilliseconds": 1000, "backoffCoefficient": 2.0}
    assert [retry_delay_ms({**options, "maxRetryIntervalInMilliseconds": 5000}, n) for n in (1, 3, 4)] == [
        1000,
        4000,
        5000,
    ]
