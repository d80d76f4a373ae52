"""How long a reply waits in its reply queue before Service Bus expires it (its time-to-live).

A reply nobody collects must not stay forever. The caller said how long it cares through the
request's deadline, so by default a reply lives until that deadline plus a margin (a reply of a
request answered just in time still gives its caller a moment to collect it), bounded by a floor
and a ceiling; a request without a deadline gets the default. `QSCORE_REPLY_TTL_S` sets one
time-to-live for every reply instead. Both runtimes send replies through `ReplySender`, which
asks `ReplyLifetime.seconds` for each one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from qscore.settings import SettingsError

if TYPE_CHECKING:
    from qscore.transport.replies import ReplyAddress

REPLY_TTL_ENV = "QSCORE_REPLY_TTL_S"
REPLY_TTL_DEFAULT_ENV = "QSCORE_REPLY_TTL_DEFAULT_S"
REPLY_TTL_MARGIN_ENV = "QSCORE_REPLY_TTL_MARGIN_S"


@dataclass(frozen=True)
class ReplyLifetime:
    default_s: float = 3600.0  # a request without a deadline
    margin_s: float = 300.0  # kept this long after the request's deadline
    floor_s: float = 60.0
    ceiling_s: float = 86_400.0
    fixed_s: float | None = None  # every reply lives this long (QSCORE_REPLY_TTL_S)

    def seconds(self, deadline: float | None, *, now: float | None = None) -> float:
        """The time-to-live of a reply to a request with `deadline` (epoch seconds, or None)."""
        if self.fixed_s is not None:
            return self.fixed_s
        if deadline is None:
            return self.default_s
        left = deadline - (time.time() if now is None else now)
        return min(self.ceiling_s, max(self.floor_s, left + self.margin_s))

    @classmethod
    def from_env(cls) -> ReplyLifetime:
        def number(name: str) -> float | None:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return None
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value > 0:  # NaN too
                raise SettingsError(f"{name} must be a positive number of seconds, not {raw!r}")
            return value

        base = cls()
        return cls(
            default_s=number(REPLY_TTL_DEFAULT_ENV) or base.default_s,
            margin_s=number(REPLY_TTL_MARGIN_ENV) or base.margin_s,
            fixed_s=number(REPLY_TTL_ENV),
        )


def with_deadline(address: ReplyAddress, deadline: datetime | None) -> ReplyAddress:
    """`address` carrying the request's deadline, so its reply expires after it (both runtimes)."""
    epoch = deadline_epoch(deadline)
    return address if epoch is None else dataclasses.replace(address, deadline=epoch)


def deadline_epoch(deadline: datetime | None) -> float | None:
    """A request's deadline as epoch seconds (naive datetimes are UTC, as the contract says)."""
    if deadline is None:
        return None
    return (deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)).timestamp()
