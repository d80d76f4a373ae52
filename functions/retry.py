"""Retry options with exponential backoff for activity calls.

The Python SDK's RetryOptions serialises only the first interval and the attempt count; the
Durable extension reads the same JSON object as its .NET RetryOptions, so the backoff coefficient
and the interval cap are added to that JSON here (the local engine honours them too).
"""

from __future__ import annotations

from typing import Any

from azure.durable_functions import RetryOptions

from functions.settings import RetryPolicy
from qscore.backoff import backoff_delay


def policy_delay_s(policy: RetryPolicy, failed_attempts: int) -> float:
    """The wait before attempt `failed_attempts + 1` of a retry inside an activity."""
    delay_ms = backoff_delay(
        policy.first_retry_ms,
        failed_attempts,
        coefficient=policy.backoff_coefficient,
        cap=float(policy.max_retry_ms),
    )
    return delay_ms / 1000


class BackoffRetryOptions(RetryOptions):
    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(
            first_retry_interval_in_milliseconds=policy.first_retry_ms,
            max_number_of_attempts=policy.max_attempts,
        )
        self.policy = policy

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = dict(super().to_json())
        document["backoffCoefficient"] = self.policy.backoff_coefficient
        document["maxRetryIntervalInMilliseconds"] = self.policy.max_retry_ms
        return document


def retry_delay_ms(retry_options: dict[str, Any], failed_attempts: int) -> float:
    """The wait before attempt `failed_attempts + 1`, from the JSON form of the options."""
    first = float(retry_options.get("firstRetryIntervalInMilliseconds", 1000))
    coefficient = float(retry_options.get("backoffCoefficient", 1.0))
    cap = float(retry_options.get("maxRetryIntervalInMilliseconds", 6 * 24 * 3600 * 1000))
    return backoff_delay(first, failed_attempts, coefficient=coefficient, cap=cap)
