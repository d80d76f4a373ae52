"""AMQP error conditions the endpoint answers with, and the broker's refusal exception."""

from __future__ import annotations

from dataclasses import dataclass

from proton import Condition, symbol

NOT_FOUND = "amqp:not-found"
NOT_ALLOWED = "amqp:not-allowed"
DECODE_ERROR = "amqp:decode-error"
SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
LOCK_LOST = "com.microsoft:message-lock-lost"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
TIMEOUT = "com.microsoft:timeout"
ARGUMENT_ERROR = "com.microsoft:argument-error"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"


def error(condition: str, description: str) -> Condition:
    """An AMQP error with an (empty) info map: the SDK indexes info unconditionally."""
    return Condition(condition, description, {symbol("reason"): description})


class BrokerError(Exception):
    """A request the broker refuses; `condition` is the AMQP error the client gets."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


@dataclass(frozen=True, slots=True)
class QueueCountsRow:
    """Per-queue counts, as the `$management` counts operation reports them."""

    active: int
    locked: int
    dead_letter: int
    scheduled: int

    @property
    def total(self) -> int:
        return self.active + self.locked + self.dead_letter + self.scheduled
