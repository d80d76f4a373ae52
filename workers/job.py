"""Job mode, for KEDA's ScaledJob: exit cleanly after N messages, or once the queue stays quiet.

A Job's pod should take its share of work and end, so KEDA can start a fresh one for the next
message instead of killing a busy pod on scale-in (KEDA issues #2900/#2901).

- `exit_after_messages`: the worker never takes more than N messages at once; it stops receiving
  when N are taken and exits (the normal drain path) once N are finished, i.e. completed or
  dead-lettered. An abandoned message went back to the queue, so it frees its place again.
- `exit_when_idle_s`: the worker exits when nothing was received for that long while it held
  nothing: a Job started for a message another Job took ends instead of waiting forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qscore.transport.settle_outcomes import ABANDONED, COMPLETED, DEAD_LETTERED

__all__ = ["ABANDONED", "COMPLETED", "DEAD_LETTERED", "JobLimits"]


@dataclass
class JobLimits:
    """Counts what a job-mode worker took and finished; `None` limits mean "run until stopped"."""

    exit_after_messages: int | None = None
    exit_when_idle_s: float | None = None
    taken: int = 0  # received and not given back
    finished: int = 0  # completed or dead-lettered
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def room(self) -> int | None:
        """How many more messages may be received now (None: no limit)."""
        if self.exit_after_messages is None:
            return None
        return max(0, self.exit_after_messages - self.taken)

    def took(self, count: int) -> None:
        self.taken += count
        self.busy()

    def busy(self) -> None:
        """Something was received or is held: the idle clock starts again."""
        self.idle_since = time.monotonic()

    def settled(self, outcome: str, count: int) -> None:
        if outcome == ABANDONED:
            self.taken = max(0, self.taken - count)
        else:
            self.finished += count

    @property
    def done(self) -> bool:
        return self.exit_after_messages is not None and self.finished >= self.exit_after_messages

    @property
    def idle_too_long(self) -> bool:
        if self.exit_when_idle_s is None:
            return False
        return time.monotonic() - self.idle_since >= self.exit_when_idle_s

    def exit_reason(self) -> str | None:
        """Why the worker should exit now, or None."""
        if self.done:
            return f"job mode: {self.finished} message(s) settled (exit_after_messages)"
        if self.idle_too_long:
            return f"job mode: nothing received for {self.exit_when_idle_s:g} s (exit_when_idle_s)"
        return None
