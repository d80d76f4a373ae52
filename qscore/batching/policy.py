"""When a batch is full and how long its first item may wait."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """`max_batch_size` caps every model's batch (in rows, 0 = the model's own limit);
    `max_delay_s` is how long the first item of a batch may wait for company; with `adaptive`
    it is an upper bound and the wait is measured per key (qscore.batching.adaptive)."""

    max_batch_size: int = 0
    max_delay_s: float = 0.002
    max_in_flight: int = 4
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise ValueError("max_batch_size must be >= 0 (0 = the model's own limit)")
        if self.max_delay_s < 0:
            raise ValueError("max_delay_s must be >= 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    def batch_size_for(self, model_max_batch_size: int) -> int:
        return effective_batch_size(model_max_batch_size, self.max_batch_size)


def effective_batch_size(model_max_batch_size: int, cap: int) -> int:
    """Rows per batch: the model's max batch size (from its Triton config) capped by `cap`.

    A model without batching (max_batch_size 0) takes one request per call.
    """
    model_limit = max(1, model_max_batch_size)
    return min(model_limit, cap) if cap > 0 else model_limit
