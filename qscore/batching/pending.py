"""The batch being filled for one key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class PendingBatch(Generic[T]):
    """Items waiting for one key; `rows` counts samples (a request may carry several)."""

    max_rows: int
    items: list[T] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None

    def fits(self, rows: int) -> bool:
        """Whether an item of `rows` samples can join without going over the limit.

        An empty batch takes any item, so a request larger than the cap still gets scored alone.
        """
        return not self.items or self.rows + rows <= self.max_rows

    def add(self, item: T, rows: int) -> None:
        self.items.append(item)
        self.rows += rows

    @property
    def full(self) -> bool:
        return self.rows >= self.max_rows

    def close(self) -> list[T]:
        """Stop the timer and hand over the items."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        items, self.items, self.rows = self.items, [], 0
        return items
